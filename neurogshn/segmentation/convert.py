"""Build a :class:`PanopticSegmentation` from an id map plus per-id metadata.

Every segmenter ends here, so that area, box, ordering and void handling are the same for all of
them: ids listed in the map but not in the metadata become void (0), metadata entries absent
from the map are dropped, segments are ordered by id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from neurogshn.segmentation.base import PanopticSegmentation, Segment


@dataclass(frozen=True)
class SegmentInfo:
    """What a segmenter knows about one id of its map.

    Args:
        category: category name, or ``None`` when unknown.
        is_thing: countable object (True) or stuff region (False).
        score: confidence in [0, 1].
    """

    category: str | None
    is_thing: bool
    score: float = 1.0


def segmentation_from_map(
    segment_map: np.ndarray, info: Mapping[int, SegmentInfo]
) -> PanopticSegmentation:
    """Turn an ``H×W`` id map and its metadata into the segmentation contract.

    Args:
        segment_map: integer ids per pixel; ``0`` and negative values are void.
        info: metadata per id. Pixels whose id has no entry become void.

    Returns:
        A :class:`PanopticSegmentation` whose map is ``int32`` with ids ``> 0`` only where a
        segment exists, segments sorted by id, areas and COCO boxes computed from the map.
    """
    seg = np.asarray(segment_map)
    if seg.ndim != 2:
        raise ValueError(f"segment_map must be H×W, got shape {seg.shape}")
    seg = seg.astype(np.int64, copy=False)
    out = np.zeros(seg.shape, dtype=np.int32)
    segments: list[Segment] = []
    ids, inverse, counts = np.unique(seg, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(seg.shape)
    for k, (sid, count) in enumerate(zip(ids.tolist(), counts.tolist())):
        if sid <= 0 or sid not in info:
            continue
        mask = inverse == k
        out[mask] = sid
        ys, xs = np.nonzero(mask)
        x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
        meta = info[sid]
        segments.append(
            Segment(
                id=int(sid),
                category=meta.category,
                is_thing=bool(meta.is_thing),
                score=float(meta.score),
                area=int(count),
                bbox=(float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)),
            )
        )
    return PanopticSegmentation(segment_map=out, segments=segments)
