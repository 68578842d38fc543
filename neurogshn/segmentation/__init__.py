"""Panoptic segmenters behind one interface (:class:`~neurogshn.segmentation.base.Segmenter`).

``get_segmenter("gt" | "superpixel" | "transformers" | "detectron2", **kwargs)``.
"""

from neurogshn.segmentation.base import PanopticSegmentation, Segment, Segmenter, bbox_of_mask
from neurogshn.segmentation.convert import SegmentInfo, segmentation_from_map
from neurogshn.segmentation.registry import (
    SEGMENTERS,
    get_segmenter,
    register_segmenter,
    segment_record,
    segmenter_config,
)

__all__ = [
    "SEGMENTERS",
    "PanopticSegmentation",
    "Segment",
    "SegmentInfo",
    "Segmenter",
    "bbox_of_mask",
    "get_segmenter",
    "register_segmenter",
    "segment_record",
    "segmentation_from_map",
    "segmenter_config",
]
