"""neurogshn.tasks"""
