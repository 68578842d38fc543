"""``gt``: the data set's own panoptic annotations, through the segmenter interface."""

from __future__ import annotations

from typing import Any

import numpy as np

from neurogshn.errors import ConfigError
from neurogshn.segmentation.base import PanopticSegmentation


class GroundTruthSegmenter:
    """Returns the annotated segmentation of a record (``ImageRecord.segmentation``).

    Ground truth is not a function of the pixels, so this segmenter reads records, not images:
    :func:`neurogshn.segmentation.segment_record` calls :meth:`segment_record` for every
    segmenter whose ``requires_annotations`` is True. Calling it on a bare image raises
    :class:`~neurogshn.errors.ConfigError`.
    """

    name = "gt"
    requires_annotations = True

    def config(self) -> dict[str, Any]:
        """Everything that changes the output (part of the graph-cache key)."""
        return {"name": self.name}

    def segment_record(self, record: Any) -> PanopticSegmentation:
        """The record's annotated segmentation (an ``ImageRecord`` or anything with
        ``.segmentation``)."""
        seg = getattr(record, "segmentation", None)
        if not isinstance(seg, PanopticSegmentation):
            raise ConfigError(
                "segmenter 'gt' needs records that carry a PanopticSegmentation "
                f"(got {type(record).__name__} without one)"
            )
        return seg

    def __call__(self, image: np.ndarray) -> PanopticSegmentation:
        raise ConfigError(
            "segmenter 'gt' reads the data set's annotations, it cannot segment a bare image; "
            "use segment_record(record) or another segmenter (superpixel, transformers)"
        )
