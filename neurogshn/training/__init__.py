"""neurogshn.training"""
