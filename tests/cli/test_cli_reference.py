"""docs/cli.md is the CLI's own help output, and every documented command exists."""

from __future__ import annotations

from pathlib import Path

from neurogshn.cli import COMMAND_MODULES, build_parser
from neurogshn.cli.reference import render

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_cli_reference_matches_parser() -> None:
    expected = render()
    assert DOCS.read_text() == expected, (
        "docs/cli.md is stale: regenerate with `python -m neurogshn.cli.reference > docs/cli.md`"
    )


def test_every_planned_command_is_registered() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    commands = {name.replace("_", "-") for name in COMMAND_MODULES}
    assert set(sub.choices) == commands
    for name in commands:
        assert f"## `neurogshn {name}`" in DOCS.read_text()
