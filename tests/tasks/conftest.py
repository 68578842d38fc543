"""A small stand-in GSHN for the task tests (real graphs and text, learnable, fast)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from gshn_fixtures import (  # noqa: F401  (pytest fixtures: a tiny real GSHN)
    make_batch,
    tiny_model,
    tiny_overrides,
)
from safetensors.torch import save_file
from torch import nn
from torch_geometric.utils import scatter


class TinyBackbone(nn.Module):
    """encode_image/encode_text/save_pretrained with the GSHN contract's fields."""

    def __init__(self, in_dim: int = 4, dim: int = 16, vocab: int = 64) -> None:
        super().__init__()
        self.node = nn.Linear(in_dim, dim)
        self.tok = nn.Embedding(vocab, dim)
        self.vocab = vocab

    def encode_image(self, batch):
        nodes = self.node(batch.x)
        pooled = scatter(nodes, batch.batch, dim=0, dim_size=batch.num_graphs, reduce="mean")
        return SimpleNamespace(
            image_embeds=nn.functional.normalize(pooled, dim=-1),
            node_embeds=nodes,
            node_batch=batch.batch,
            # centroids as the graph cache's graphs carry them (0.5, 0.5 where a test graph
            # has none)
            node_pos=getattr(batch, "pos", None)
            if getattr(batch, "pos", None) is not None
            else torch.full((nodes.shape[0], 2), 0.5),
        )

    def encode_text(self, texts):
        words = [t.lower().split() for t in texts]
        length = max(len(w) for w in words)
        ids = torch.zeros(len(texts), length, dtype=torch.long)
        mask = torch.zeros(len(texts), length, dtype=torch.long)
        for i, ws in enumerate(words):
            for j, w in enumerate(ws):
                ids[i, j] = sum(map(ord, w)) % self.vocab
                mask[i, j] = 1
        ids = ids.to(self.tok.weight.device)
        mask = mask.to(self.tok.weight.device)
        tokens = self.tok(ids)
        sent = (tokens * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
        return SimpleNamespace(
            text_embeds=nn.functional.normalize(sent, dim=-1),
            token_embeds=tokens,
            attention_mask=mask,
        )

    def save_pretrained(self, directory):
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_text(json.dumps({"tiny": True}))
        save_file(
            {k: v.contiguous() for k, v in self.state_dict().items()},
            str(directory / "model.safetensors"),
        )


@pytest.fixture
def tiny_backbone():
    torch.manual_seed(0)
    return TinyBackbone()


@pytest.fixture(scope="module")
def tiny_checkpoint(scenes_root, tmp_path_factory) -> Path:
    """An untrained gshn-tiny sized to the fixture's graphs (written like a pretraining run)."""
    from neurogshn.graph.cache import load_graph_dataset
    from neurogshn.model.gshn import GSHN

    graphs = load_graph_dataset(scenes_root, "train", progress=False)
    torch.manual_seed(0)
    model = GSHN.from_config_name(
        "gshn-tiny", node_features=graphs.feature_dim, edge_features=graphs.edge_dim
    )
    out = tmp_path_factory.mktemp("ckpt") / "final"
    model.save_pretrained(out)
    return out
