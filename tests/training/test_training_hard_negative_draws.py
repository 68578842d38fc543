"""Which hard negative a pretraining step draws for a caption (PretrainingData.kinds)."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data

from neurogshn.training.data import PretrainingData, PretrainItemSource


class Graphs(list):
    @property
    def image_ids(self) -> list[int]:
        return [int(g.image_id) for g in self]


N_IMAGES = 64


def source() -> PretrainItemSource:
    graphs = Graphs(Data(x=torch.zeros(2, 3), image_id=i, num_nodes=2) for i in range(N_IMAGES))
    captions = {i: [f"caption {i}"] for i in range(N_IMAGES)}
    negatives = {
        (i, 0): {"relation_swap": f"swap {i}", "count_flip": f"count {i}"} for i in range(N_IMAGES)
    }
    return PretrainItemSource(graphs, captions, negatives)


def count_share(kinds: tuple[str, ...], epochs: int = 40) -> float:
    data = PretrainingData(source(), 16, seed=3, kinds=kinds)
    drawn = [
        neg
        for epoch in range(epochs)
        for step in range(data.steps_per_epoch)
        for neg in data.batch(epoch, step).hard_negatives
    ]
    assert len(drawn) == epochs * N_IMAGES and all(n is not None for n in drawn)
    return sum(n.startswith("count") for n in drawn) / len(drawn)


def test_kinds_are_drawn_uniformly_among_those_a_caption_has():
    assert count_share(("relation_swap", "count_flip")) == pytest.approx(0.5, abs=0.04)
    assert count_share(("relation_swap",)) == 0.0
    assert count_share(("count_flip", "size_flip")) == 1.0  # no size flip in the file


def test_a_kind_listed_k_times_is_drawn_k_times_as_often():
    share = count_share(("relation_swap", "count_flip", "count_flip", "count_flip"))
    assert share == pytest.approx(0.75, abs=0.04)


def test_batches_carry_the_kind_of_each_negative():
    """The default batch type records which kind each drawn negative is (the masked relation
    prediction's "no relation" class learns from one kind); the draws are unchanged."""
    data = PretrainingData(source(), 16, seed=3, kinds=("relation_swap", "count_flip"))
    batch = data.batch(0, 0)
    assert batch.hard_negative_kinds is not None and len(batch.hard_negative_kinds) == 16
    for neg, kind in zip(batch.hard_negatives, batch.kinds(), strict=True):
        assert neg == f"{'swap' if kind == 'relation_swap' else 'count'} {neg.split()[1]}"
    assert set(batch.kinds()) == {"relation_swap", "count_flip"}
    none = PretrainingData(source(), 16, seed=3, kinds=("size_flip",)).batch(0, 0)
    assert none.hard_negatives == [None] * 16 and none.kinds() == [None] * 16
