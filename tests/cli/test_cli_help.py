"""Every option of every command has help text that states its default, and every --split
follows one rule: reading and measuring commands default to test, fitting ones to train."""

from __future__ import annotations

import argparse

from neurogshn.cli import build_parser
from neurogshn.cli.reference import _subparsers

#: commands whose --split chooses data to fit on (export: calibration and QAT)
FITTING_SPLIT = {"neurogshn export"}


def _commands() -> list[tuple[str, argparse.ArgumentParser]]:
    out = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        out.append((path, parser))
        for name, child in _subparsers(parser):
            walk(child, f"{path} {name}")

    walk(build_parser(), "neurogshn")
    return out


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    skip = (argparse._HelpAction, argparse._SubParsersAction, argparse._VersionAction)
    return [a for a in parser._actions if a.option_strings and not isinstance(a, skip)]


def test_every_option_has_help_that_states_its_default() -> None:
    missing, silent = [], []
    for path, parser in _commands():
        formatter = parser._get_formatter()
        for action in _options(parser):
            if not action.help:
                missing.append(f"{path} {action.option_strings[0]}")
                continue
            shown = formatter._get_help_string(action) % {"default": action.default}
            meaningful = action.default not in (None, False, [], argparse.SUPPRESS)
            if meaningful and not action.required and "default" not in shown.lower():
                silent.append(f"{path} {action.option_strings[0]}")
    assert not missing, f"options without help: {missing}"
    assert not silent, f"help that does not state the default: {silent}"


def test_every_split_option_follows_the_one_rule() -> None:
    seen = 0
    for path, parser in _commands():
        for action in _options(parser):
            if "--split" not in action.option_strings:
                continue
            seen += 1
            if action.default == "all":  # `data graphs` builds every split
                continue
            want = "train" if path in FITTING_SPLIT else "test"
            assert action.default == want, f"{path} --split defaults to {action.default}"
    assert seen >= 6


def test_the_rule_is_stated_in_the_top_level_help() -> None:
    text = " ".join(build_parser().format_help().split())
    assert "reading and measuring commands default to test, fitting ones to train" in text
