"""Segmenter registry: ``get_segmenter(name, **kwargs)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from neurogshn.errors import ConfigError
from neurogshn.segmentation.base import PanopticSegmentation, Segmenter


def _gt(**kwargs: Any) -> Segmenter:
    from neurogshn.segmentation.gt import GroundTruthSegmenter

    if kwargs:
        raise ConfigError(f"segmenter 'gt' takes no options, got {sorted(kwargs)}")
    return GroundTruthSegmenter()


def _superpixel(**kwargs: Any) -> Segmenter:
    from neurogshn.segmentation.superpixel import SuperpixelSegmenter

    return SuperpixelSegmenter(**kwargs)


def _transformers(**kwargs: Any) -> Segmenter:
    from neurogshn.segmentation.hf import TransformersSegmenter

    if "model_dir" not in kwargs:
        raise ConfigError("segmenter 'transformers' needs model_dir=<local model directory>")
    return TransformersSegmenter(**kwargs)


def _detectron2(**kwargs: Any) -> Segmenter:
    from neurogshn.segmentation.detectron2 import Detectron2Segmenter

    if "predictor" not in kwargs or "metadata" not in kwargs:
        raise ConfigError(
            "segmenter 'detectron2' needs predictor=<detectron2 predictor> and metadata=...; "
            "detectron2 itself is not installable here (see docs/graphs.md)"
        )
    return Detectron2Segmenter(**kwargs)


SEGMENTERS: dict[str, Callable[..., Segmenter]] = {
    "gt": _gt,
    "superpixel": _superpixel,
    "transformers": _transformers,
    "detectron2": _detectron2,
}


def register_segmenter(name: str, factory: Callable[..., Segmenter]) -> None:
    """Add a segmenter factory under ``name`` (overwrites an existing entry)."""
    SEGMENTERS[name] = factory


def get_segmenter(name: str, **kwargs: Any) -> Segmenter:
    """Build a segmenter by name (``gt``, ``superpixel``, ``transformers``, ``detectron2``).

    Keyword arguments go to the segmenter's constructor.
    """
    if name not in SEGMENTERS:
        raise ConfigError(f"unknown segmenter {name!r}; choose one of {sorted(SEGMENTERS)}")
    return SEGMENTERS[name](**kwargs)


def segmenter_config(segmenter: Any) -> dict[str, Any]:
    """What identifies a segmenter's output (for cache keys)."""
    cfg = getattr(segmenter, "config", None)
    if callable(cfg):
        return dict(cfg())
    return {"name": getattr(segmenter, "name", type(segmenter).__name__)}


def segment_record(segmenter: Any, record: Any) -> PanopticSegmentation:
    """Segment a data set record: annotation-based segmenters read the record, the others its
    ``image``."""
    if getattr(segmenter, "requires_annotations", False):
        return segmenter.segment_record(record)
    return segmenter(record.image)
