"""``neurogshn data …``: generate the embedded benchmark, build graph caches, inspect graphs.

Each action lives in its own module ``neurogshn.cli.data_<action>`` with a ``register``
function, like the top-level commands.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util

DATA_ACTIONS: tuple[str, ...] = ("scenes", "graphs", "inspect")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="generate the relational-scenes benchmark, build graph caches, inspect graphs",
        description="Data commands. Every command that reads a data set takes --strict.",
    )
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")
    for action in DATA_ACTIONS:
        module_name = f"neurogshn.cli.data_{action}"
        if importlib.util.find_spec(module_name) is not None:
            importlib.import_module(module_name).register(actions)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
