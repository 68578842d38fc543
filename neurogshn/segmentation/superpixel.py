"""``superpixel``: SLIC superpixels (scikit-image) for images nobody annotated.

Every superpixel becomes a segment with ``category=None`` and ``is_thing=False``; the graph then
carries only visual, colour and geometric information (the category slot is "unknown").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from neurogshn.segmentation.base import PanopticSegmentation
from neurogshn.segmentation.convert import SegmentInfo, segmentation_from_map


@dataclass
class SuperpixelConfig:
    """SLIC parameters (see ``skimage.segmentation.slic``).

    Args:
        n_segments: approximate number of superpixels.
        compactness: colour/space trade-off; higher gives squarer superpixels.
        sigma: Gaussian pre-smoothing width in pixels.
        min_size_factor: superpixels smaller than this fraction of the mean size are merged.
    """

    n_segments: int = 32
    compactness: float = 10.0
    sigma: float = 1.0
    min_size_factor: float = 0.3


class SuperpixelSegmenter:
    """SLIC superpixels as a panoptic segmentation (ids start at 1, no void).

    Args:
        config: SLIC parameters; keyword arguments override its fields.
    """

    name = "superpixel"
    requires_annotations = False

    def __init__(self, config: SuperpixelConfig | None = None, **overrides: Any) -> None:
        base = asdict(config) if config is not None else {}
        self.cfg = SuperpixelConfig(**{**base, **overrides})

    def config(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self.cfg)}

    def __call__(self, image: np.ndarray) -> PanopticSegmentation:
        from skimage.segmentation import slic

        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"expected an H×W×3 RGB image, got shape {img.shape}")
        labels = slic(
            img,
            n_segments=self.cfg.n_segments,
            compactness=self.cfg.compactness,
            sigma=self.cfg.sigma,
            min_size_factor=self.cfg.min_size_factor,
            start_label=1,
            channel_axis=-1,
        )
        info = {int(i): SegmentInfo(None, False, 1.0) for i in np.unique(labels) if i > 0}
        return segmentation_from_map(labels, info)
