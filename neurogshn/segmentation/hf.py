"""``transformers``: Mask2Former / DETR (any model whose image processor has
``post_process_panoptic_segmentation``) loaded from a LOCAL directory.

Nothing is downloaded: the directory must hold what ``save_pretrained`` writes for both the model
and its image processor (``config.json``, ``model.safetensors``, ``preprocessor_config.json``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurogshn.errors import ConfigError, InputFileError
from neurogshn.segmentation.base import PanopticSegmentation
from neurogshn.segmentation.convert import SegmentInfo, segmentation_from_map
from neurogshn.utils.runtime import resolve_device
from neurogshn.utils.weights import require_safetensors


@dataclass
class TransformersSegmenterConfig:
    """Post-processing thresholds of ``post_process_panoptic_segmentation``.

    Args:
        threshold: minimum class probability of a query to keep its mask.
        mask_threshold: probability above which a mask pixel is "on".
        overlap_mask_area_threshold: a query's visible area / its own mask area must exceed this,
            else it is dropped (occluded).
        label_ids_to_fuse: label ids whose instances are fused into one segment (stuff).
        thing_ids: label ids (or names) that are things. ``None``: read ``thing_ids`` from the
            model config when present, else every label not in ``label_ids_to_fuse`` is a thing.
    """

    threshold: float = 0.5
    mask_threshold: float = 0.5
    overlap_mask_area_threshold: float = 0.8
    label_ids_to_fuse: list[int] = field(default_factory=list)
    thing_ids: list[int | str] | None = None


class TransformersSegmenter:
    """Panoptic segmentation with a transformers model saved in a local directory.

    Args:
        model_dir: directory written by ``model.save_pretrained`` + ``processor.save_pretrained``.
        device: torch device (``None``: CUDA when available).
        config: thresholds; keyword arguments override its fields.

    Category names come from ``model.config.id2label``.
    """

    name = "transformers"
    requires_annotations = False

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        device: Any = None,
        config: TransformersSegmenterConfig | None = None,
        **overrides: Any,
    ) -> None:

        import torch
        from transformers import AutoImageProcessor, AutoModelForUniversalSegmentation

        base = dataclasses.asdict(config) if config is not None else {}
        self.cfg = TransformersSegmenterConfig(**{**base, **overrides})
        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise InputFileError(
                self.model_dir, "not a transformers model directory (config.json missing)"
            )
        require_safetensors(self.model_dir, "segmenter")
        self.device = resolve_device(device)
        try:
            self.processor = AutoImageProcessor.from_pretrained(
                str(self.model_dir), local_files_only=True
            )
            try:
                model = AutoModelForUniversalSegmentation.from_pretrained(
                    str(self.model_dir), local_files_only=True, use_safetensors=True
                )
            except ValueError:  # DETR panoptic is registered as image segmentation
                from transformers import AutoModelForImageSegmentation

                model = AutoModelForImageSegmentation.from_pretrained(
                    str(self.model_dir), local_files_only=True, use_safetensors=True
                )
        except (OSError, ValueError) as exc:
            raise InputFileError(self.model_dir, f"cannot load model/processor: {exc}") from exc
        if not hasattr(self.processor, "post_process_panoptic_segmentation"):
            raise ConfigError(
                f"{type(self.processor).__name__} has no post_process_panoptic_segmentation; "
                "use a Mask2Former or DETR panoptic model"
            )
        self.model = model.to(self.device).eval()
        self._torch = torch
        id2label = getattr(self.model.config, "id2label", None) or {}
        self.id2label: dict[int, str] = {int(k): str(v) for k, v in id2label.items()}
        self.thing_ids = self._resolve_thing_ids(self.cfg.thing_ids)

    def _resolve_thing_ids(self, given: Iterable[int | str] | None) -> set[int] | None:
        if given is None:
            given = getattr(self.model.config, "thing_ids", None)
        if given is None:
            return None
        label2id = {v: k for k, v in self.id2label.items()}
        out: set[int] = set()
        for item in given:
            if isinstance(item, str):
                if item not in label2id:
                    raise ConfigError(f"thing label {item!r} is not in the model's id2label")
                out.add(label2id[item])
            else:
                out.add(int(item))
        return out

    def config(self) -> dict[str, Any]:

        weights = sorted(self.model_dir.glob("*.safetensors")) + sorted(
            self.model_dir.glob("*.bin")
        )
        stamp = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in weights]
        return {
            "name": self.name,
            "model_dir": str(self.model_dir.resolve()),
            "weights": stamp,
            **dataclasses.asdict(self.cfg),
        }

    def _is_thing(self, label_id: int) -> bool:
        if self.thing_ids is not None:
            return label_id in self.thing_ids
        return label_id not in set(self.cfg.label_ids_to_fuse)

    def segment_batch(self, images: list[np.ndarray]) -> list[PanopticSegmentation]:
        """Segment several ``H×W×3`` uint8 RGB images (sizes may differ)."""
        if not images:
            return []
        torch = self._torch
        inputs = self.processor(images=list(images), return_tensors="pt")
        inputs = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in inputs.items()}
        with torch.no_grad():
            outputs = self.model(**inputs)
        results = self.processor.post_process_panoptic_segmentation(
            outputs,
            threshold=self.cfg.threshold,
            mask_threshold=self.cfg.mask_threshold,
            overlap_mask_area_threshold=self.cfg.overlap_mask_area_threshold,
            label_ids_to_fuse=set(self.cfg.label_ids_to_fuse),
            target_sizes=[(int(im.shape[0]), int(im.shape[1])) for im in images],
        )
        segs = []
        for im, res in zip(images, results):
            seg_t = res.get("segmentation")
            if seg_t is None:
                segs.append(segmentation_from_map(np.zeros(im.shape[:2], np.int32), {}))
                continue
            seg_map = seg_t.detach().cpu().numpy().astype(np.int64)
            info = {}
            for s in res.get("segments_info", []):
                label_id = int(s["label_id"])
                info[int(s["id"])] = SegmentInfo(
                    category=self.id2label.get(label_id),
                    is_thing=self._is_thing(label_id),
                    score=float(s.get("score", 1.0)),
                )
            segs.append(segmentation_from_map(seg_map, info))
        return segs

    def __call__(self, image: np.ndarray) -> PanopticSegmentation:
        return self.segment_batch([np.asarray(image)])[0]
