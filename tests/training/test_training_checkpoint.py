"""CheckpointManager: pickle-free optimizer/RNG state, atomic save, pruning, clear errors."""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from neurogshn.errors import CheckpointError
from neurogshn.training.checkpoint import (
    CheckpointManager,
    capture_rng_state,
    flatten_optimizer_state,
    restore_rng_state,
    unflatten_optimizer_state,
)


def _trained(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer, object]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 4)).pow(2).sum().backward()
        opt.step()
        sched.step()
    return model, opt, sched


def _save(manager: CheckpointManager, step: int, model, opt, sched) -> Path:
    return manager.save(step, model, opt, sched, {"epoch": 0}, {"seed": 0})


def test_optimizer_state_round_trip_is_exact() -> None:
    _, opt, _ = _trained()
    tensors, meta = flatten_optimizer_state(opt.state_dict())
    json.dumps(meta)  # the non-tensor part is plain JSON
    back = unflatten_optimizer_state(tensors, json.loads(json.dumps(meta)))
    ref = opt.state_dict()
    assert back["param_groups"] == ref["param_groups"]
    for i, st in ref["state"].items():
        for k, v in st.items():
            assert torch.equal(back["state"][i][k], v), (i, k)


def test_rng_states_round_trip() -> None:
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    tensors, meta = capture_rng_state()
    meta = json.loads(json.dumps(meta))
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng_state(tensors, meta, rank=0)
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def test_save_restore_continues_identically(tmp_path: Path) -> None:
    model, opt, sched = _trained()
    manager = CheckpointManager(tmp_path / "ck", keep_last=2)
    path = _save(manager, 3, model, opt, sched)
    assert sorted(p.name for p in path.iterdir()) == [
        "model.safetensors",
        "train_config.json",
        "trainer.json",
        "training_state.safetensors",
    ]
    # Continue the original for two steps …
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(3))
    for _ in range(2):
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        opt.step()
        sched.step()
    # … and a fresh model restored from the checkpoint for the same two steps.
    model2, opt2, sched2 = _trained(seed=5)
    CheckpointManager.restore(CheckpointManager.read(path), model2, opt2, sched2)
    assert sched2.last_epoch == 3
    for _ in range(2):
        opt2.zero_grad()
        model2(x).pow(2).sum().backward()
        opt2.step()
        sched2.step()
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)


def test_keep_last_prunes_and_latest(tmp_path: Path) -> None:
    model, opt, sched = _trained()
    manager = CheckpointManager(tmp_path / "ck", keep_last=2)
    for step in (2, 4, 6):
        _save(manager, step, model, opt, sched)
    assert [p.name for p in manager.checkpoints()] == ["step-00000004", "step-00000006"]
    assert manager.latest() == manager.path_for(6)
    # No temporary directories are left behind.
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["step-00000004", "step-00000006"]


def test_truncated_file_is_named(tmp_path: Path) -> None:
    model, opt, sched = _trained()
    path = _save(CheckpointManager(tmp_path / "ck"), 1, model, opt, sched)
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: truncated"):
        CheckpointManager.read(path)


def test_corrupted_file_is_named(tmp_path: Path) -> None:
    model, opt, sched = _trained()
    path = _save(CheckpointManager(tmp_path / "ck"), 1, model, opt, sched)
    state = path / "training_state.safetensors"
    data = bytearray(state.read_bytes())
    data[-1] ^= 0xFF
    state.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"training_state\.safetensors: corrupted"):
        CheckpointManager.read(path)


def test_truncated_trainer_json_is_named(tmp_path: Path) -> None:
    model, opt, sched = _trained()
    path = _save(CheckpointManager(tmp_path / "ck"), 1, model, opt, sched)
    trainer = path / "trainer.json"
    trainer.write_text(trainer.read_text()[:50])
    with pytest.raises(CheckpointError, match=r"trainer\.json: not valid JSON"):
        CheckpointManager.read(path)


def test_pickle_handed_as_state_is_refused(tmp_path: Path) -> None:
    model, opt, sched = _trained()
    path = _save(CheckpointManager(tmp_path / "ck"), 1, model, opt, sched)
    # A pickle in place of the state, with the digest updated so only the format check can stop it.
    state = path / "training_state.safetensors"
    state.write_bytes(pickle.dumps({"optim.0.exp_avg": torch.zeros(2)}))
    meta = json.loads((path / "trainer.json").read_text())
    meta["files"].pop("training_state.safetensors")
    (path / "trainer.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"training_state\.safetensors: is a pickle"):
        CheckpointManager.read(path)


def test_weights_of_another_model_are_refused(tmp_path: Path) -> None:
    model, opt, sched = _trained()
    path = _save(CheckpointManager(tmp_path / "ck"), 1, model, opt, sched)
    other = nn.Sequential(nn.Linear(4, 16), nn.LayerNorm(16), nn.Linear(16, 2))
    other_opt = torch.optim.AdamW(other.parameters())
    with pytest.raises(CheckpointError, match=r"model\.safetensors: weights do not fit"):
        CheckpointManager.restore(CheckpointManager.read(path), other, other_opt, None)
