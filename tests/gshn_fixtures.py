"""Shared fixtures of the model and loss tests: synthetic scene graphs and a tiny GSHN.

Imported by tests/model/conftest.py and tests/losses/conftest.py (tests/ is on sys.path
because of the root conftest)."""

from __future__ import annotations

import os

import pytest
import torch
from torch_geometric.data import Batch, Data

os.environ.setdefault("HF_HUB_OFFLINE", "1")

NODE_FEATURES = 24
EDGE_FEATURES = 5


def synthetic_graph(n: int, seed: int, edges: bool = True) -> Data:
    """A scene-graph-shaped ``Data``: node 0 global, star + chain edges (or none)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, NODE_FEATURES, generator=gen)
    pairs = []
    if edges and n > 1:
        for i in range(1, n):
            pairs += [(0, i), (i, 0)]
        for i in range(1, n - 1):
            pairs += [(i, i + 1), (i + 1, i)]
    ei = torch.tensor(pairs, dtype=torch.long).T if pairs else torch.zeros(2, 0, dtype=torch.long)
    return Data(
        x=x,
        edge_index=ei,
        edge_attr=torch.randn(ei.shape[1], EDGE_FEATURES, generator=gen),
        pos=torch.rand(n, 2, generator=gen),
        is_global=torch.arange(n) == 0,
        image_id=seed,
        num_nodes=n,
    )


@pytest.fixture
def graph_factory():
    return synthetic_graph


@pytest.fixture
def make_batch():
    def make(sizes=(4, 1, 3, 6), edges=True, seed=0) -> Batch:
        return Batch.from_data_list(
            [synthetic_graph(n, seed + i, edges) for i, n in enumerate(sizes)]
        )

    return make


@pytest.fixture
def tiny_overrides() -> dict:
    return dict(node_features=NODE_FEATURES, edge_features=EDGE_FEATURES)


@pytest.fixture
def tiny_model(tiny_overrides):
    from neurogshn.model import GSHN

    torch.manual_seed(0)
    return GSHN.from_config_name("gshn-tiny", **tiny_overrides)


@pytest.fixture
def captions() -> list[str]:
    return list(CAPTIONS)


CAPTIONS = [
    "a red circle left of a blue square",
    "a blue square left of a red circle",
    "a small green triangle above the grass",
    "a large yellow cross below a purple diamond",
]


def one_step_and_reload(overrides: dict, make_batch, directory) -> tuple:
    """A gshn-tiny built with ``overrides``: one pretraining loss backward on the fixture
    batch, then saved to ``directory`` and loaded back; returns ``(model, reloaded)``."""
    from neurogshn.losses.objective import PretrainBatch, PretrainingObjective
    from neurogshn.model import GSHN

    torch.manual_seed(0)
    model = GSHN.from_config_name("gshn-tiny", **overrides)
    model.fit_token_statistics(CAPTIONS)
    graphs = make_batch()
    captions = list(CAPTIONS[: graphs.num_graphs])
    out = PretrainingObjective()(model, PretrainBatch(graphs, captions, [None] * len(captions)))
    out["loss"].backward()
    model.save_pretrained(directory)
    return model, GSHN.from_pretrained(directory)
