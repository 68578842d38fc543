"""Data: the embedded relational-scenes benchmark and COCO-format loading.

- :mod:`neurogshn.data.vocabulary`: the fixed vocabulary (DESIGN.md §4).
- :mod:`neurogshn.data.scenes`: the deterministic scene generator (:func:`generate_scenes`).
- :mod:`neurogshn.data.logic`: parse and evaluate statements/questions on a scene.
- :mod:`neurogshn.data.captions`: captions and ARO-style hard negatives.
- :mod:`neurogshn.data.taskgen`: VQA, visual entailment and NLVR2-style task files.
- :mod:`neurogshn.data.coco`: :class:`CocoPanopticDataset` (ours and the COCO 2017 layout).
- :mod:`neurogshn.data.tasks`: loaders of the task and hard-negative files.
- :mod:`neurogshn.data.grounding`: which segments each noun phrase of a caption names.
"""

from neurogshn.data.coco import CocoPanopticDataset, ImageRecord, SkippedRecord
from neurogshn.data.scenes import generate_scenes

__all__ = ["CocoPanopticDataset", "ImageRecord", "SkippedRecord", "generate_scenes"]
