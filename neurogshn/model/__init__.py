"""neurogshn.model"""
