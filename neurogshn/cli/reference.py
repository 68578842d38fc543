"""Render the CLI reference (docs/cli.md) from the argument parser itself."""

from __future__ import annotations

import argparse
import os

from neurogshn.cli import build_parser

_HEADER = """# CLI reference

Generated from the parser by `python -m neurogshn.cli.reference > docs/cli.md`; a test checks
that this file matches the CLI. Every command that reads a data set accepts `--strict` (stop at
the first bad record instead of skipping it and listing it at the end).
"""


def _subparsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found: list[tuple[str, argparse.ArgumentParser]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.extend(action.choices.items())
    return found


def _walk(parser: argparse.ArgumentParser, path: str) -> list[str]:
    parts = [f"\n## `{path}`\n", "```text", parser.format_help().rstrip(), "```"]
    for name, child in _subparsers(parser):
        parts.extend(_walk(child, f"{path} {name}"))
    return parts


def render() -> str:
    """Return the markdown reference; help is wrapped at 100 columns for stable output."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        return "\n".join([_HEADER.rstrip(), *_walk(build_parser(), "neurogshn")]) + "\n"
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


if __name__ == "__main__":
    print(render(), end="")
