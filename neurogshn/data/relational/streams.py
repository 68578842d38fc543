"""The generator's random streams: every image, its wording and every split-level draw has its
own stream keyed by (seed, split, purpose, index), so one image can be regenerated alone and a
change in one part of the generator does not shift the draws of another."""

from __future__ import annotations

import zlib

import numpy as np


def split_code(split: str) -> int:
    """A stable integer for a split name (part of every random stream's key)."""
    return zlib.crc32(split.encode("utf-8"))


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random stream of image ``index`` of ``split``."""
    return np.random.default_rng([int(seed), split_code(split), 0, int(index)])


def phrasing_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random stream that words the captions of image ``index`` of ``split``."""
    return np.random.default_rng([int(seed), split_code(split), 2, int(index)])


def split_rng(seed: int, split: str, purpose: int) -> np.random.Generator:
    """A split-level random stream (task pairing etc.), independent of the image streams."""
    return np.random.default_rng([int(seed), split_code(split), 1, int(purpose)])
