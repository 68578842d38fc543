"""neurogshn.hardware"""
