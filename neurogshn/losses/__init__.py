"""neurogshn.losses"""
