"""Two CPU processes under torchrun (gloo): training works, only rank 0 writes, and both ranks
end with identical weights."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_torchrun_two_processes_gloo(scenes_root: Path, tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun not found next to the Python interpreter"
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cmd = [
        torchrun,
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "neurogshn.cli",
        "pretrain",
        "--config",
        str(REPO / "configs" / "tiny.json"),
        "--data",
        str(scenes_root),
        "--out",
        str(out),
        "--device",
        "cpu",
        # 24 images / 2 ranks / batch 4 = 3 steps per epoch; 2 epochs; a checkpoint at step 3.
        "--set",
        "schedule.batch_size=4",
        "--set",
        "schedule.epochs=2",
        "--set",
        "checkpoint.every_steps=3",
        "--set",
        "eval.untrained=false",
    ]
    # Own session, so that a timeout can kill torchrun *and* its worker processes.
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"torchrun timed out:\n{stderr[-4000:]}")
    assert proc.returncode == 0, stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    assert results["world_size"] == 2 and results["steps"] == 6
    digests = results["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1], "ranks ended with different weights"
    # Only rank 0 wrote: one log row per step (not two), one summary, no leftovers.
    rows = (out / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4", "5", "6"]
    assert stdout.count("== GSHN pretraining") == 1
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "step-00000003",
        "step-00000006",
    ]
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoints",
        "final",
        "log.csv",
        "results.json",
        "train_config.json",
    ]
    # 2 ranks x batch 4 graphs per step were trained.
    assert results["trained"]["num_images"] == 8
    header = rows[0].split(",")
    assert float(rows[-1].split(",")[header.index("loss")]) > 0
