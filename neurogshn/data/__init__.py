"""Data: COCO-format loading, task files, and the embedded relational-scenes benchmark.

- :mod:`neurogshn.data.coco`: :class:`CocoPanopticDataset` (ours and the COCO 2017 layout).
- :mod:`neurogshn.data.tasks`: loaders of the task and hard-negative files.
- :mod:`neurogshn.data.grounding`: which segments each noun phrase of a caption names.
- :mod:`neurogshn.data.diagnostics`: benchmark diagnostics of a data set that declares a
  benchmark in its manifest (:func:`~neurogshn.data.diagnostics.diagnostics_for`).
- :mod:`neurogshn.data.relational`: the relational-scenes benchmark (generator, scene logic,
  phrasing families, its diagnostics). Not imported here: training and scoring work on any
  COCO-format data set without it.
"""

from neurogshn.data.coco import CocoPanopticDataset, ImageRecord, SkippedRecord

__all__ = ["CocoPanopticDataset", "ImageRecord", "SkippedRecord"]
