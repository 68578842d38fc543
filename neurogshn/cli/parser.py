"""The argument parser class of every ``neurogshn`` command: help that states each default."""

from __future__ import annotations

import argparse

#: The split rule of the command line, quoted in every ``--split`` help: commands that measure
#: or show data read the test split; commands that fit something (training, export
#: calibration, QAT) read the train split.
SPLIT_RULE = "reading and measuring commands default to test, fitting ones to train"


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help unless the help already names its default
    or there is none to name (``None``, ``False``, an empty list, a required option)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text.lower()
            or not action.option_strings
            or action.required
            or default is None
            or default is False
            or default == []
            or default is argparse.SUPPRESS
        ):
            return text
        return f"{text} (default: %(default)s)"


class CommandParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with :class:`DefaultsHelpFormatter` unless told otherwise
    (nested sub-command parsers inherit it)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
