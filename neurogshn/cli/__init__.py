"""The ``neurogshn`` command line.

Each subcommand lives in its own module ``neurogshn.cli.<name>`` (the command is the name
with ``_`` written ``-``: ``data_scenes`` would register ``data-scenes``) exposing
``register(subparsers) -> None``, which adds its parser and sets ``func(args) -> int`` as the
parser default. Modules import heavy dependencies (torch, transformers, Lava) inside ``func``
so that ``neurogshn --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence

from neurogshn._version import __version__
from neurogshn.cli.parser import SPLIT_RULE, CommandParser
from neurogshn.errors import NeurogshnError

# In the order of the data flow; `neurogshn --help` lists them in this order.
COMMAND_MODULES: tuple[str, ...] = (
    "data",
    "pretrain",
    "recipe",
    "finetune",
    "evaluate",
    "export",
    "verify",
    "energy",
    "raster",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the full argument parser (also used by the docs' CLI reference test)."""
    parser = CommandParser(
        prog="neurogshn",
        description=(
            "Graph Spiking Hybrid Networks for vision-language alignment: scene graphs from "
            "panoptic segments, a spiking (Norse LIF) + graph-attention encoder, STL "
            "pre-training, downstream tasks and Loihi/lava-dl export. Splits: "
            f"{SPLIT_RULE}."
        ),
    )
    parser.add_argument("--version", action="version", version=f"neurogshn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    for name in COMMAND_MODULES:
        module_name = f"{__name__}.{name}"
        if importlib.util.find_spec(module_name) is None:
            continue
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``neurogshn`` console script."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse has reported
        return exc.code if isinstance(exc.code, int) else 2
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except NeurogshnError as exc:
        print(f"neurogshn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"neurogshn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
