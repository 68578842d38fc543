"""Names shown to people, shared by every part that shows them."""

from __future__ import annotations


def layer_name(index: int) -> str:
    """The name of spiking layer ``index`` wherever it is shown — plots, reports, export files
    and the training log: ``layer0``, ``layer1``, … (0-based)."""
    return f"layer{index}"
