"""neurogshn.viz"""
