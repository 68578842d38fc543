"""neurogshn.data"""
