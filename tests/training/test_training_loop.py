"""Trainer and pretraining batches with a small stand-in model (the GSHN runs are in
test_training_pretrain.py): determinism, exact resume in-process, schedule, log, errors."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from torch import nn
from torch_geometric.data import Data
from torch_geometric.nn import global_mean_pool

from neurogshn.errors import CheckpointError
from neurogshn.training.config import TrainConfig
from neurogshn.training.data import PretrainingData, PretrainItemSource
from neurogshn.training.trainer import Trainer, warmup_cosine
from neurogshn.utils.runtime import seed_everything


class Batch(NamedTuple):
    graphs: object
    captions: list
    hard_negatives: list


class Graphs(list):
    @property
    def image_ids(self) -> list[int]:
        return [int(g.image_id) for g in self]


class TinyAligner(nn.Module):
    """Image = mean of projected node features; text = bag of character codes; dropout so that
    the torch RNG matters for exact resume."""

    def __init__(self) -> None:
        super().__init__()
        self.img = nn.Linear(6, 16)
        self.txt = nn.EmbeddingBag(128, 16)
        self.drop = nn.Dropout(0.2)
        self.fusion_ratio = nn.Parameter(torch.tensor(1.0))


def objective(model: TinyAligner, batch: Batch) -> dict[str, torch.Tensor]:
    g = batch.graphs
    img = global_mean_pool(model.drop(model.img(g.x)), g.batch) * model.fusion_ratio
    codes = [torch.tensor([ord(c) % 128 for c in text]) for text in batch.captions]
    offsets = torch.tensor([0] + [len(c) for c in codes[:-1]]).cumsum(0)
    txt = model.txt(torch.cat(codes), offsets)
    logits = nn.functional.normalize(img, dim=-1) @ nn.functional.normalize(txt, dim=-1).T * 10
    itc = nn.functional.cross_entropy(logits, torch.arange(len(codes)))
    return {"loss": itc, "itc": itc.detach(), "diag/spike_rate_layer0": torch.tensor(0.25)}


def make_source(n: int = 30) -> PretrainItemSource:
    gen = torch.Generator().manual_seed(0)
    graphs = Graphs(
        Data(x=torch.randn(3 + i % 4, 6, generator=gen), image_id=100 + i) for i in range(n)
    )
    captions = {100 + i: [f"scene {i} caption {j}" for j in range(5)] for i in range(n)}
    negatives = {(100 + i, 0): {"relation_swap": f"swapped {i}"} for i in range(0, n, 2)}
    return PretrainItemSource(graphs, captions, negatives)


def make_trainer(run_dir: Path, *overrides: str) -> Trainer:
    cfg = TrainConfig().with_overrides(
        [
            "schedule.batch_size=6",
            "schedule.epochs=3",
            "schedule.warmup=2",
            "checkpoint.every_steps=4",
            "checkpoint.keep_last=2",
            "log.every_steps=1",
            "log.progress=false",
            *overrides,
        ]
    )
    seed_everything(cfg.seed)
    data = PretrainingData(make_source(), cfg.schedule.batch_size, seed=cfg.seed, batch_type=Batch)
    return Trainer(TinyAligner(), objective, data, cfg, run_dir)


def weights(trainer: Trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer.model.parameters()]


def test_default_kinds_are_every_kind_of_the_file() -> None:
    """Without a list (the config's default), a step may draw every kind the hard-negatives
    file has, whatever its name; a list restricts the draws."""
    source = make_source()
    source.hard_negatives[(101, 0)] = {"size_flip": "bigger 1", "negation": "not 1"}
    assert TrainConfig().data.hard_negative_kinds is None
    data = PretrainingData(source, 6, batch_type=Batch)
    assert data.kinds == ("relation_swap", "size_flip", "negation")
    only = PretrainingData(source, 6, kinds=["size_flip"], batch_type=Batch)
    assert only.kinds == ("size_flip",)
    drawn = {neg for i in range(only.steps_per_epoch) for neg in only.batch(0, i).hard_negatives}
    assert drawn <= {None, "bigger 1"}


def test_batches_are_seeded_and_cover_the_epoch() -> None:
    source = make_source()
    a = PretrainingData(source, 6, seed=3, batch_type=Batch)
    b = PretrainingData(source, 6, seed=3, batch_type=Batch)
    c = PretrainingData(source, 6, seed=4, batch_type=Batch)
    assert a.steps_per_epoch == 5
    ba, bb, bc = a.batch(1, 2), b.batch(1, 2), c.batch(1, 2)
    assert ba.captions == bb.captions and ba.hard_negatives == bb.hard_negatives
    assert ba.captions != bc.captions
    seen = [int(i) for k in range(5) for i in a.batch(0, k).graphs.image_id]
    assert sorted(seen) == list(range(100, 130))
    assert a.epoch_order(0) != a.epoch_order(1)
    # Each caption is one of its image's, and a hard negative only where the file has one.
    for image_id, cap, neg in zip(ba.graphs.image_id.tolist(), ba.captions, ba.hard_negatives):
        assert cap in source.captions[image_id]
        index = source.captions[image_id].index(cap)
        expected = source.hard_negatives.get((image_id, index), {}).get("relation_swap")
        assert neg == expected


def test_ranks_split_the_epoch() -> None:
    source = make_source()
    r0 = PretrainingData(source, 5, seed=0, rank=0, world_size=2, batch_type=Batch)
    r1 = PretrainingData(source, 5, seed=0, rank=1, world_size=2, batch_type=Batch)
    assert r0.steps_per_epoch == r1.steps_per_epoch == 3
    ids0 = {int(i) for k in range(3) for i in r0.batch(0, k).graphs.image_id}
    ids1 = {int(i) for k in range(3) for i in r1.batch(0, k).graphs.image_id}
    assert not ids0 & ids1 and len(ids0 | ids1) == 30


def test_warmup_cosine_schedule() -> None:
    f = warmup_cosine(100, 10, 0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(100) == pytest.approx(0.1)
    assert 0.1 < f(55) < 1.0
    assert warmup_cosine(100, 0.05, 0.0)(4) == pytest.approx(1.0)


def test_same_seed_same_weights_and_training_helps(tmp_path: Path) -> None:
    t1 = make_trainer(tmp_path / "a")
    before = objective(t1.model.eval(), t1.data.batch(0, 0))["loss"].item()
    t1.model.train()
    r1 = t1.fit()
    t2 = make_trainer(tmp_path / "b")
    t2.fit()
    assert all(torch.equal(a, b) for a, b in zip(weights(t1), weights(t2)))
    after = objective(t1.model.eval(), t1.data.batch(0, 0))["loss"].item()
    assert after < before
    assert r1.steps == 15 and math.isclose(r1.epochs_completed, 3.0)
    t3 = make_trainer(tmp_path / "c", "seed=1")
    t3.fit()
    assert not all(torch.equal(a, b) for a, b in zip(weights(t1), weights(t3)))


def test_resume_in_process_is_exact_and_log_is_consistent(tmp_path: Path) -> None:
    ref = make_trainer(tmp_path / "ref")
    ref.fit()
    run = tmp_path / "run"
    first = make_trainer(run)
    first.fit(stop_after=7)  # checkpoint at step 4; steps 5-7 are lost
    assert [p.name for p in first.checkpoints.checkpoints()] == ["step-00000004"]
    second = make_trainer(run)
    assert second.resume()
    assert second.step == 4 and second.resumed_from == first.checkpoints.path_for(4)
    second.fit()
    assert all(torch.equal(a, b) for a, b in zip(weights(ref), weights(second)))
    with open(run / "log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows] == list(range(1, 16))
    for key in ("loss", "itc", "lr", "grad_norm", "fusion_ratio", "spike_rate", "graphs_per_s"):
        assert key in rows[0], key
    assert float(rows[0]["lr"]) == pytest.approx(1e-3 / 2)
    assert float(rows[0]["spike_rate"]) == pytest.approx(0.25)
    # Steps 1..15 logged once each with the same losses as the uninterrupted run.
    with open(tmp_path / "ref" / "log.csv", newline="") as fh:
        ref_rows = list(csv.DictReader(fh))
    assert [r["loss"] for r in rows] == [r["loss"] for r in ref_rows]
    # The finished run's last checkpoint is the final step.
    assert second.checkpoints.latest() == second.checkpoints.path_for(15)


def test_resume_with_other_config_is_refused(tmp_path: Path) -> None:
    make_trainer(tmp_path).fit(stop_after=4)
    other = make_trainer(tmp_path, "optim.lr=0.5")
    with pytest.raises(CheckpointError, match=r"train_config\.json.*optim\.lr: checkpoint 0\.001"):
        other.resume()
    # Changing what is allowed to change (logging, checkpoint cadence) is fine.
    assert make_trainer(tmp_path, "log.every_steps=3", "checkpoint.every_steps=5").resume()


def test_nothing_to_resume(tmp_path: Path) -> None:
    assert make_trainer(tmp_path).resume() is False
