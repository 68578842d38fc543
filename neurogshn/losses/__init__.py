"""neurogshn.losses: pretraining objectives of the GSHN.

- :mod:`~neurogshn.losses.itc`: image-text InfoNCE with learned temperature + NegCLIP negatives
- :mod:`~neurogshn.losses.contrastive`: spatio-temporal contrastive learning on SNN time windows
- :mod:`~neurogshn.losses.stl`: Spiked Text Learning (spiking text projector, token–node codes)
- :mod:`~neurogshn.losses.itm`: image-text matching with hard negatives
- :mod:`~neurogshn.losses.mlm`: image-conditioned masked language modelling
- :mod:`~neurogshn.losses.grounding`: phrase grounding of the ITM head's cross-attention
- :mod:`~neurogshn.losses.objective`: :class:`PretrainBatch`, :class:`PretrainingObjective`
"""
