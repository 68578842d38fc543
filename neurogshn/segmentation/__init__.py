"""neurogshn.segmentation"""
