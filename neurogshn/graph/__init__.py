"""neurogshn.graph"""
