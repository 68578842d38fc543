"""``detectron2``: adapter from detectron2's documented panoptic predictor output.

detectron2 is not on PyPI and cannot be installed in this environment, so this module never
imports it. It converts the output format documented in detectron2's "Use Models" tutorial
(``docs/tutorials/models.md``, "Model Output Format"):

``outputs["panoptic_seg"] = (pred, segments_info)`` where ``pred`` is an ``H×W`` integer tensor
of segment ids and

* if ``segments_info`` is a list of dicts, each has ``id`` (the segment id in ``pred``),
  ``isthing`` (bool) and ``category_id`` (contiguous id: an index into
  ``metadata.thing_classes`` when ``isthing``, else into ``metadata.stuff_classes``), optionally
  ``score`` and ``area``. Pixels whose id is not listed are void;
* if ``segments_info`` is ``None``, pixel values are ``>= -1``: ``-1`` is void, otherwise the
  contiguous category is ``pixel // metadata.label_divisor`` and it is a thing when that id is
  among ``metadata.thing_dataset_id_to_contiguous_id.values()``.

The conversion is tested against that format with hand-made tensors, not against a running
detectron2 (see docs/graphs.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from neurogshn.errors import ConfigError
from neurogshn.segmentation.base import PanopticSegmentation
from neurogshn.segmentation.convert import SegmentInfo, segmentation_from_map


def _get(metadata: Any, key: str, default: Any = None) -> Any:
    if isinstance(metadata, Mapping):
        return metadata.get(key, default)
    return getattr(metadata, key, default)


def _class_name(names: Sequence[str] | None, idx: int) -> str | None:
    if names is None or not 0 <= idx < len(names):
        return None
    return str(names[idx])


def convert_detectron2_panoptic(
    panoptic_seg: tuple[Any, list[dict[str, Any]] | None], metadata: Any
) -> PanopticSegmentation:
    """Convert ``outputs["panoptic_seg"]`` of a detectron2 predictor to the contract.

    Args:
        panoptic_seg: ``(pred, segments_info)`` as documented above; ``pred`` may be a torch
            tensor (any device) or a numpy array.
        metadata: a detectron2 ``Metadata`` object or a dict with ``thing_classes``,
            ``stuff_classes`` (and, when ``segments_info`` is None, ``label_divisor`` and
            ``thing_dataset_id_to_contiguous_id``).

    Returns:
        The segmentation, with segment ids renumbered ``1..S`` in order of their original ids
        (detectron2's ids may be 0 or, in the ``segments_info=None`` case, large).
    """
    pred, segments_info = panoptic_seg
    if hasattr(pred, "detach"):
        pred = pred.detach().cpu().numpy()
    pred = np.asarray(pred).astype(np.int64)
    if pred.ndim != 2:
        raise ValueError(f"panoptic_seg[0] must be H×W, got shape {pred.shape}")
    thing_classes = _get(metadata, "thing_classes")
    stuff_classes = _get(metadata, "stuff_classes")

    entries: list[tuple[int, SegmentInfo]] = []
    if segments_info is not None:
        for s in segments_info:
            cat = int(s["category_id"])
            isthing = bool(s["isthing"])
            name = _class_name(thing_classes if isthing else stuff_classes, cat)
            entries.append((int(s["id"]), SegmentInfo(name, isthing, float(s.get("score", 1.0)))))
    else:
        divisor = _get(metadata, "label_divisor")
        if divisor is None:
            raise ConfigError(
                "detectron2 output without segments_info needs metadata.label_divisor"
            )
        thing_ids = set((_get(metadata, "thing_dataset_id_to_contiguous_id") or {}).values())
        for pid in np.unique(pred).tolist():
            if pid < 0:
                continue
            cat = pid // int(divisor)
            isthing = cat in thing_ids
            name = _class_name(thing_classes if isthing else stuff_classes, cat)
            entries.append((int(pid), SegmentInfo(name, isthing, 1.0)))

    # Renumber to 1..S so that detectron2's id 0 (a valid segment there) is not read as void.
    remapped = np.zeros(pred.shape, dtype=np.int64)
    info: dict[int, SegmentInfo] = {}
    for new_id, (old_id, meta) in enumerate(sorted(entries, key=lambda e: e[0]), start=1):
        remapped[pred == old_id] = new_id
        info[new_id] = meta
    return segmentation_from_map(remapped, info)


class Detectron2Segmenter:
    """Wrap a detectron2 predictor (e.g. ``DefaultPredictor``) as a segmenter.

    Args:
        predictor: callable taking an ``H×W×3`` uint8 image in ``input_format`` order and
            returning a dict with ``"panoptic_seg"``.
        metadata: detectron2 metadata (``MetadataCatalog.get(name)``) or an equivalent dict.
        input_format: ``"BGR"`` (detectron2's default ``cfg.INPUT.FORMAT``) or ``"RGB"``.
    """

    name = "detectron2"
    requires_annotations = False

    def __init__(
        self,
        predictor: Callable[[np.ndarray], dict[str, Any]],
        metadata: Any,
        input_format: str = "BGR",
    ) -> None:
        if input_format not in ("BGR", "RGB"):
            raise ConfigError(f"input_format must be 'BGR' or 'RGB', got {input_format!r}")
        self.predictor = predictor
        self.metadata = metadata
        self.input_format = input_format

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "predictor": type(self.predictor).__name__,
            "input_format": self.input_format,
            "thing_classes": list(_get(self.metadata, "thing_classes") or []),
            "stuff_classes": list(_get(self.metadata, "stuff_classes") or []),
        }

    def __call__(self, image: np.ndarray) -> PanopticSegmentation:
        img = np.asarray(image)
        if self.input_format == "BGR":
            img = np.ascontiguousarray(img[:, :, ::-1])
        outputs = self.predictor(img)
        if "panoptic_seg" not in outputs:
            raise ValueError("detectron2 predictor output has no 'panoptic_seg' entry")
        return convert_detectron2_panoptic(outputs["panoptic_seg"], self.metadata)
