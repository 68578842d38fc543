"""Embedding a split with a model: its graphs and its captions, in batches, without gradients
(shared by retrieval, re-ranking and the hard-negative diagnostics)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from neurogshn.utils.runtime import resolve_device


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameter-less module)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def collate_graphs(graphs: Sequence[Any]) -> Any:
    """One PyG ``Batch`` of ``graphs``."""
    from torch_geometric.data import Batch

    return Batch.from_data_list(list(graphs))


@torch.no_grad()
def encode_graphs(
    model: nn.Module,
    graphs: Sequence[Any],
    batch_size: int = 64,
    device: torch.device | str | None = None,
) -> Tensor:
    """Image embeddings of a sequence of PyG graphs, in order.

    Args:
        model: a GSHN (anything with ``encode_image(batch).image_embeds``).
        graphs: PyG ``Data`` objects (a list, or a dataset indexed ``0..len-1``).
        batch_size: graphs per forward pass.
        device: where to run; default the model's device.

    Shapes:
        returns ``len(graphs)×D`` (float32, on the CPU).
    """
    dev = model_device(model) if device is None else resolve_device(device)
    out = []
    for start in range(0, len(graphs), batch_size):
        chunk = [graphs[i] for i in range(start, min(start + batch_size, len(graphs)))]
        batch = collate_graphs(chunk).to(dev)
        out.append(model.encode_image(batch).image_embeds.float().cpu())
    if not out:
        raise ValueError("no graphs to encode")
    return torch.cat(out)


@torch.no_grad()
def encode_texts(model: nn.Module, texts: Sequence[str], batch_size: int = 256) -> Tensor:
    """Sentence embeddings of ``texts`` in order (``len(texts)×D`` float32 on the CPU)."""
    out = []
    for start in range(0, len(texts), batch_size):
        out.append(model.encode_text(list(texts[start : start + batch_size])).text_embeds)
    if not out:
        raise ValueError("no texts to encode")
    return torch.cat([o.float().cpu() for o in out])
