"""The benchmarks this package can generate and diagnose, imported only when asked for.

A benchmark is a COCO-format data set plus knowledge that COCO files do not hold (how to
generate it, a truth oracle for its captions). Training and scoring must work on any COCO
data set, so they never import a benchmark's package; they name a benchmark (a data set
declares its name in ``annotations/scenes.json``, see :mod:`neurogshn.data.diagnostics`) and
this registry imports what the name points to, lazily.

Example::

    from neurogshn.data.benchmarks import DEFAULT_BENCHMARK, generate

    generate(DEFAULT_BENCHMARK, "data/scenes", seed=0, splits={"train": 20, "test": 10})
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Benchmark:
    """Where a benchmark's parts live (``"module:attribute"``, imported on use).

    Args:
        name: the name a data set declares in its manifest (``benchmark``).
        generator: a function ``generate(out_dir, **options) -> Path``.
        diagnostics: a class ``cls(root, split, dataset=None)`` following
            :class:`~neurogshn.data.diagnostics.DatasetDiagnostics`.
    """

    name: str
    generator: str
    diagnostics: str


#: The name of the embedded relational-scenes benchmark (what its manifest declares).
RELATIONAL_SCENES: str = "neurogshn relational scenes"

#: Known benchmarks by declared name.
BENCHMARKS: dict[str, Benchmark] = {
    RELATIONAL_SCENES: Benchmark(
        name=RELATIONAL_SCENES,
        generator="neurogshn.data.relational.scenes:generate_scenes",
        diagnostics="neurogshn.data.relational.adapter:RelationalDiagnostics",
    ),
}

#: The benchmark ``neurogshn pretrain`` generates into an empty ``data.root``.
DEFAULT_BENCHMARK: str = RELATIONAL_SCENES


def resolve(target: str) -> Any:
    """Import ``"module:attribute"`` and return the attribute."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not attribute:
        raise ValueError(f"expected 'module:attribute', got {target!r}")
    return getattr(importlib.import_module(module_name), attribute)


def benchmark(name: str) -> Benchmark:
    """The registered benchmark ``name``.

    Raises:
        KeyError: naming the known benchmarks, when ``name`` is not one.
    """
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise KeyError(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})") from None


def generate(name: str, out_dir: str | os.PathLike[str], **options: Any) -> Path:
    """Generate benchmark ``name`` into ``out_dir`` (``options``: its generator's keyword
    arguments, e.g. ``seed``, ``splits``, ``image_size``)."""
    return Path(resolve(benchmark(name).generator)(out_dir, **options))


__all__ = [
    "BENCHMARKS",
    "DEFAULT_BENCHMARK",
    "RELATIONAL_SCENES",
    "Benchmark",
    "benchmark",
    "generate",
    "resolve",
]
