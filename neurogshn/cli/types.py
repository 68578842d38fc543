"""argparse value types that refuse out-of-range numbers when the command line is read.

A negative ``--max-images`` would otherwise reach a Python slice (``[: -1]``: all but one) and
a negative count a ``range`` or ``randn``; argparse reports the refusal with the option's name
and exits 2 before anything runs.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from neurogshn.errors import ConfigError


def _number(kind: type, minimum: float, inclusive: bool, what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        if value < minimum or (not inclusive and value == minimum):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


#: an integer ≥ 1 (counts of images, steps, epochs …)
positive_int = _number(int, 1, True, "a positive integer")
#: an integer ≥ 0 (seeds, indices, counts where 0 means "none")
nonnegative_int = _number(int, 0, True, "an integer >= 0")
#: a finite number > 0 (learning rates, temperatures)
positive_float = _number(float, 0.0, False, "a number > 0")
#: a finite number ≥ 0 (weights where 0 switches a term off)
nonnegative_float = _number(float, 0.0, True, "a number >= 0")


def data_image_count(args: argparse.Namespace, default: int = 64) -> int:
    """``--n`` of a command that reads ``--data`` or makes ``--random N`` inputs: the two
    counts cannot both be given (``--n`` would be silently ignored)."""
    if args.random is not None and args.n is not None:
        raise ConfigError("--n counts --data images; with --random N, N is the count")
    return default if args.n is None else int(args.n)
