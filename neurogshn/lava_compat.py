"""The one place that imports Lava (lava-nc) and lava-dl.

Why this module exists: ``lava.lib.dl.slayer/__init__.py`` imports its ``object_detection``
subpackage eagerly, and that subpackage imports torchvision at import time (bounding-box ops
for YOLO-style heads). torchvision cannot be installed on this stack (no build matches torch
2.13 CPU, and an installed one breaks transformers). We never use slayer's object detection,
so before importing slayer we register a placeholder for that subpackage which raises a clear
ImportError if anything touches it. ``lava.lib.dl.netx`` imports slayer, so it needs the same.

Second import-time trap: ``lava.magma.runtime.message_infrastructure.multiprocessing`` calls
``multiprocessing.set_start_method('fork')`` without ``force``, which raises "context has
already been set" whenever anything in the process (a DataLoader, a tokenizer pool, …) has
already fixed the start method. Before the first Lava import we clear a previously fixed
context so Lava can set the ``fork`` method it needs (fork is Linux's default anyway).

Also needed, and done once at install time by ``scripts/patch_lava.py``: lava-nc's Python 3.11
dataclass fix. Import Lava only through the functions here.
"""

from __future__ import annotations

import importlib
import multiprocessing
import sys
import types
from typing import Any

_OBD = "lava.lib.dl.slayer.object_detection"


class LavaUnavailableError(ImportError):
    """Lava / lava-dl is not installed or not patched; says how to fix it."""


def _placeholder_object_detection() -> types.ModuleType:
    module = types.ModuleType(_OBD)
    module.__doc__ = "Placeholder: slayer object detection needs torchvision (not installed)."

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise ImportError(
            f"{_OBD}.{name} needs torchvision, which neurogshn does not install "
            "(it breaks transformers with torch 2.13 CPU)"
        )

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    return module


_MP_MODULE = "lava.magma.runtime.message_infrastructure.multiprocessing"


def _import(name: str) -> Any:
    if _OBD not in sys.modules:
        sys.modules[_OBD] = _placeholder_object_detection()
    if _MP_MODULE not in sys.modules and multiprocessing.get_start_method(allow_none=True):
        multiprocessing.set_start_method(None, force=True)  # type: ignore[arg-type]
    try:
        importlib.import_module(_MP_MODULE)  # imported now, under the guard above
        return importlib.import_module(name)
    except ValueError as exc:  # the unpatched dataclass error of lava-nc on Python 3.11
        raise LavaUnavailableError(
            f"importing {name} failed ({exc}); run `make setup` (scripts/patch_lava.py) "
            "to apply the Python 3.11 fix to lava-nc"
        ) from exc
    except ModuleNotFoundError as exc:
        raise LavaUnavailableError(
            f"{name} is not importable ({exc}); `make setup` installs lava-nc 0.10.0 and "
            "lava-dl 0.6.0"
        ) from exc


def slayer() -> Any:
    """Return ``lava.lib.dl.slayer``."""
    return _import("lava.lib.dl.slayer")


def netx() -> Any:
    """Return ``lava.lib.dl.netx``."""
    return _import("lava.lib.dl.netx")


def lava_module(name: str) -> Any:
    """Import any ``lava.*`` module by dotted name (e.g. ``lava.proc.io.source``)."""
    if not name.startswith("lava."):
        raise ValueError(f"not a Lava module: {name}")
    return _import(name)


def lava_available() -> bool:
    """True when lava-nc and lava-dl import (used to skip nothing: tests require Lava)."""
    try:
        netx()
        lava_module("lava.magma.core.run_configs")
    except ImportError:
        return False
    return True
