"""The panoptic segmentation contract every segmenter returns (DESIGN.md §3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Segment:
    """One panoptic segment.

    Args:
        id: segment id as it appears in ``segment_map`` (> 0).
        category: category name (``"circle"``, ``"sky"`` …) or ``None`` when unknown
            (e.g. superpixels).
        is_thing: True for countable objects, False for stuff regions.
        score: confidence in [0, 1] (1.0 for ground truth).
        area: number of pixels.
        bbox: ``(x, y, w, h)`` in pixels, COCO convention.
    """

    id: int
    category: str | None
    is_thing: bool
    score: float
    area: int
    bbox: tuple[float, float, float, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "category": self.category,
            "is_thing": self.is_thing,
            "score": self.score,
            "area": self.area,
            "bbox": list(self.bbox),
        }


@dataclass
class PanopticSegmentation:
    """A panoptic segmentation of one image.

    Args:
        segment_map: ``H×W`` integer array; 0 is void, other values are ``Segment.id``.
        segments: the segments present in ``segment_map``, in a stable order.

    An image with no segments is valid (``segments == []``).
    """

    segment_map: np.ndarray
    segments: list[Segment] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.segment_map.ndim != 2:
            raise ValueError(f"segment_map must be H×W, got shape {self.segment_map.shape}")

    @property
    def height(self) -> int:
        return int(self.segment_map.shape[0])

    @property
    def width(self) -> int:
        return int(self.segment_map.shape[1])

    def masks(self) -> np.ndarray:
        """Boolean masks, ``S×H×W``, in the order of ``segments``."""
        if not self.segments:
            return np.zeros((0, self.height, self.width), dtype=bool)
        ids = np.asarray([s.id for s in self.segments]).reshape(-1, 1, 1)
        return self.segment_map[None, :, :] == ids


def bbox_of_mask(mask: np.ndarray) -> tuple[float, float, float, float]:
    """COCO ``(x, y, w, h)`` box of a boolean mask (all zeros → zero box)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return (0.0, 0.0, 0.0, 0.0)
    x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    return (float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1))


@runtime_checkable
class Segmenter(Protocol):
    """Anything that turns an RGB image (``H×W×3`` uint8) into a :class:`PanopticSegmentation`."""

    name: str

    def __call__(self, image: np.ndarray) -> PanopticSegmentation: ...
