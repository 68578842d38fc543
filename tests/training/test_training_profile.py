"""The job profile (benchmarks/profile_pretrain.py): every phase timed, and a training step
split by the trainer's and objective's profiler labels."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load_benchmark():
    spec = importlib.util.spec_from_file_location(
        "profile_pretrain", REPO / "benchmarks" / "profile_pretrain.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_profile_times_every_phase_and_splits_the_step(
    scenes_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _load_benchmark()
    out = tmp_path / "profile.json"
    rc = bench.main(["--config", str(REPO / "configs" / "tiny.json"),
                     "--set", f'data.root="{scenes_root}"', "--steps", "2", "--warmup", "1",
                     "--sample-images", "2", "--json", str(out)])  # fmt: skip
    assert rc == 0
    report = json.loads(out.read_text())
    names = [p["phase"] for p in report["phases"]]
    for expected in ("generate scenes", "build graphs, cold", "load cached graphs",
                     "build model", "evaluate the untrained model", "training: ",
                     "checkpoints", "evaluate the trained model"):  # fmt: skip
        assert any(n.startswith(expected) for n in names), expected
    assert all(p["seconds"] > 0 for p in report["phases"] if "captions" not in p["phase"])
    # tiny.json: 24 images, batch 8, 4 epochs -> 12 steps; the step is scaled to them
    train = next(p for p in report["phases"] if p["phase"].startswith("training"))
    assert train["phase"] == "training: 12 steps"
    assert train["seconds"] == pytest.approx(12 * report["step"]["seconds"])
    parts = {p["label"]: p for p in report["step"]["parts"]}
    for label in ("train/forward", "train/backward", "train/optimizer", "model/encode_image",
                  "model/encode_text", "loss/itc", "loss/itm", "loss/itm_mlm"):  # fmt: skip
        assert label in parts and parts[label]["share"] > 0, label
    top = sum(p["share"] for p in parts.values() if p["depth"] == 0)
    assert top == pytest.approx(1.0)
    inner = sum(p["share"] for p in parts.values() if p["depth"] == 1)
    assert inner <= parts["train/forward"]["share"] + 1e-9
    assert report["job_seconds_cached"] < report["job_seconds_fresh"]
    printed = capsys.readouterr().out
    assert "part of the step" in printed and "loss/itm_mlm" in printed
