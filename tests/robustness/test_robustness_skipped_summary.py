"""A lenient run that skips bad records says which, in its summary: evaluate's notes and
pretrain's summary and results.json name each skipped file and why."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from neurogshn.cli import main

REPO = Path(__file__).resolve().parents[2]
CACHE = ".neurogshn_cache"


def _damaged_copy(scenes_root: Path, dest: Path, split: str) -> tuple[Path, str]:
    """A copy of the tiny data set with one image of ``split`` overwritten by junk bytes."""
    shutil.copytree(scenes_root, dest, ignore=shutil.ignore_patterns(CACHE))
    image = sorted((dest / "images" / split).glob("*.png"))[1]
    image.write_bytes(b"this is not a png")
    return dest, image.name


def test_evaluate_names_the_skipped_image(scenes_root: Path, tmp_path: Path, capsys) -> None:
    from neurogshn.graph.cache import load_graph_dataset
    from neurogshn.model.gshn import GSHN

    data, bad = _damaged_copy(scenes_root, tmp_path / "data", "val")
    graphs = load_graph_dataset(data, "val", progress=False)
    assert any(bad in s["path"] for s in graphs.skipped)
    torch.manual_seed(0)
    ckpt = GSHN.from_config_name(
        "gshn-tiny", node_features=graphs.feature_dim, edge_features=graphs.edge_dim
    ).save_pretrained(tmp_path / "ckpt")
    argv = ["evaluate", "--task", "retrieval", "--checkpoint", str(ckpt), "--data", str(data),
            "--split", "val", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    named = [n for n in notes if bad in n]
    assert named and "1 record(s) of the val graphs skipped" in named[0], notes
    assert "--strict" in named[0]


def test_pretrain_summary_and_results_name_the_skipped_image(
    scenes_root: Path, tmp_path: Path
) -> None:
    data, bad = _damaged_copy(scenes_root, tmp_path / "data", "train")
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "neurogshn.cli", "pretrain", "--config",
           str(REPO / "configs" / "tiny.json"), "--set", "schedule.max_steps=2", "--data",
           str(data), "--out", str(out), "--device", "cpu"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    notes = [line for line in proc.stdout.splitlines() if line.startswith("note:")]
    assert any("of the train graphs skipped" in n and bad in n for n in notes), notes
    results = json.loads((out / "results.json").read_text())
    assert any(bad in n for n in results["skipped"])
