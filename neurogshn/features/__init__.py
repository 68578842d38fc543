"""neurogshn.features"""
