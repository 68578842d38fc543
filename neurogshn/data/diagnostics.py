"""Benchmark diagnostics of a data set, for the data sets that declare a benchmark.

Training and scoring read COCO files only. Some figures need more than a COCO file holds:
which caption is *true* of which image (the retrieval oracle, ``*_true@1``) and *why* a
caption is false of an image (``*_false@1_<reason>``) need a truth oracle that knows the
data set's language and the facts of its scenes. A data set that has one says so in its
manifest, ``annotations/scenes.json``::

    {"benchmark": "neurogshn relational scenes", ...}

:func:`diagnostics_for` reads that declaration and, for a benchmark it knows
(:data:`neurogshn.data.benchmarks.BENCHMARKS`), imports the benchmark's adapter lazily and
returns it; for
any other data set (real COCO, a user's own captions) it returns ``None`` and the caller
reports the plain figures, with no note about a benchmark the data set never claimed to be.

The object returned follows :class:`DatasetDiagnostics` (duck-typed: scoring code calls its
methods and never imports the benchmark).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

#: The manifest that declares a data set's benchmark (relative to the data set root).
MANIFEST: str = "annotations/scenes.json"


@runtime_checkable
class DatasetDiagnostics(Protocol):
    """What scoring code may ask of a benchmark's diagnostics object.

    Attributes:
        name: the benchmark's declared name.
        reasons: every reason :meth:`why_false` can give, in reporting order.
    """

    name: str
    reasons: tuple[str, ...]

    def problem(self, texts: Sequence[str], image_ids: Sequence[int]) -> str | None:
        """Why the oracle cannot judge these captions on these images (``None`` if it can)."""
        ...

    def truth_matrix(self, texts: Sequence[str], image_ids: Sequence[int]) -> np.ndarray:
        """``bool`` array ``[caption, image]``: caption true of image.

        Shapes:
            output: ``len(texts) × len(image_ids)``.
        """
        ...

    def why_false(self, text: str, image_id: int) -> str | None:
        """One of :attr:`reasons` when ``text`` is false of the image, ``None`` when true."""
        ...


def read_manifest(root: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The data set's manifest (:data:`MANIFEST`) as a dict, or ``None`` when it has none or
    it is not a readable JSON object (a data set without a manifest declares nothing)."""
    path = Path(root) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def declared_benchmark(root: str | os.PathLike[str]) -> str | None:
    """The benchmark the data set at ``root`` declares (the manifest's ``benchmark``)."""
    manifest = read_manifest(root)
    name = None if manifest is None else manifest.get("benchmark")
    return name if isinstance(name, str) and name else None


def diagnostics_for(
    root: str | os.PathLike[str], split: str, dataset: Any = None
) -> DatasetDiagnostics | None:
    """The benchmark diagnostics of ``split`` of the data set at ``root``, or ``None``.

    Args:
        root: data set root.
        split: the split to be evaluated (its logical forms, scene facts …).
        dataset: the split's already loaded :class:`~neurogshn.data.coco.CocoPanopticDataset`
            (optional; saves reading the panoptic JSON again).

    Returns:
        An object following :class:`DatasetDiagnostics` when the data set declares a benchmark
        of :data:`~neurogshn.data.benchmarks.BENCHMARKS`; ``None`` otherwise.
    """
    from neurogshn.data.benchmarks import BENCHMARKS, resolve

    name = declared_benchmark(root)
    known = BENCHMARKS.get(name) if name is not None else None
    if known is None:
        return None
    return resolve(known.diagnostics)(root, split, dataset=dataset)


__all__ = [
    "MANIFEST",
    "DatasetDiagnostics",
    "declared_benchmark",
    "diagnostics_for",
    "read_manifest",
]
