"""neurogshn.model: the Graph Spiking Hybrid Network (GSHN).

- :mod:`~neurogshn.model.spiking`: spiking encoder (Norse LIF; exportable to Loihi)
- :mod:`~neurogshn.model.gat`: GATv2 stage (host)
- :mod:`~neurogshn.model.fusion`: ``V' = r·E_SNN + F_GAT`` and image pooling
- :mod:`~neurogshn.model.text`: transformer text encoder with a frozen, memoised lower part
- :mod:`~neurogshn.model.crossmodal`: cross-modal fusion blocks (caption tokens attend to nodes)
- :mod:`~neurogshn.model.positions`: node centroids, token indices and offsets, and the
  grounded positions of what tokens name, as the fusion blocks read them
- :mod:`~neurogshn.model.mlm`: image-conditioned masked language modelling over the text
  model's vocabulary (word masking, content weights, the tied masked-token head)
- :mod:`~neurogshn.model.config`: :class:`GSHNConfig` and the named configurations
- :mod:`~neurogshn.model.gshn`: :class:`GSHN` (encode_image / encode_text, save/load)

Heavy imports (transformers) are deferred until ``GSHN`` is used.
"""

from __future__ import annotations

from typing import Any

from neurogshn.model.config import NAMED_CONFIGS, GSHNConfig, config_from_name

__all__ = [
    "GSHN",
    "NAMED_CONFIGS",
    "GSHNConfig",
    "ImageEncoding",
    "TextEncoding",
    "config_from_name",
]


def __getattr__(name: str) -> Any:
    if name in ("GSHN", "ImageEncoding"):
        from neurogshn.model import gshn

        return getattr(gshn, name)
    if name == "TextEncoding":
        from neurogshn.model.text import TextEncoding

        return TextEncoding
    raise AttributeError(f"module 'neurogshn.model' has no attribute {name!r}")
