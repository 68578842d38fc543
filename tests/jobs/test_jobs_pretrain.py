"""`neurogshn pretrain` end to end on the tiny config: summary, checkpoints, and exact resume
after a SIGKILL (bit-identical final weights to an uninterrupted run)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tiny.json"
# 24 training images, batch 8 -> 3 steps/epoch; 8 epochs = 24 steps; checkpoint every 4.
COMMON = ["--config", str(TINY), "--set", "schedule.epochs=8", "--set", "checkpoint.every_steps=4"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONHASHSEED="0",
    )
    return env


def _cmd(root: Path, out: Path | None, *extra: str) -> list[str]:
    """The pretraining command; ``out=None``: no ``--out`` (the config's out_dir decides)."""
    where = ["--out", str(out)] if out is not None else []
    return [
        sys.executable,
        "-m",
        "neurogshn.cli",
        "pretrain",
        *COMMON,
        "--data",
        str(root),
        *where,
        "--device",
        "cpu",
        *extra,
    ]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "final" / "model.safetensors"))


@pytest.fixture(scope="module")
def reference_run(scenes_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pretrain") / "reference"
    proc = subprocess.run(
        _cmd(scenes_root, out), env=_env(), capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (out / "stdout.txt").write_text(proc.stdout)
    return out


def test_pretrain_prints_summary_and_writes_run(reference_run: Path) -> None:
    stdout = (reference_run / "stdout.txt").read_text()
    for label in (
        "image→text R@1",
        "text→image R@10",
        "relation swap hard-neg. acc.",
        "untrained",
        "trained",
        "checkpoint:",
        "wall time:",
    ):
        assert label in stdout, label
    results = json.loads((reference_run / "results.json").read_text())
    assert results["steps"] == 24
    for key in ("i2t_R@1", "t2i_R@1", "relation_swap_acc"):
        assert 0.0 <= results["trained"][key] <= 1.0
        assert 0.0 <= results["untrained"][key] <= 1.0
    ckpts = sorted(p.name for p in (reference_run / "checkpoints").iterdir())
    assert ckpts == ["step-00000020", "step-00000024"]  # keep_last = 2
    rows = (reference_run / "log.csv").read_text().splitlines()
    assert len(rows) == 1 + 24 and rows[0].startswith("step,epoch,loss")
    # The final directory is a loadable model whose weights moved away from the checkpoint of
    # step 20 (training really happened) and equal the last step checkpoint.
    final = _weights(reference_run)
    last = load_file(str(reference_run / "checkpoints" / "step-00000024" / "model.safetensors"))
    step20 = load_file(str(reference_run / "checkpoints" / "step-00000020" / "model.safetensors"))
    assert all(torch.equal(final[k], last[k]) for k in final)
    assert any(not torch.equal(final[k], step20[k]) for k in final)


def test_sigkill_then_resume_is_bit_identical(
    reference_run: Path, scenes_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    extra = ["--set", "eval.enabled=false"]
    proc = subprocess.Popen(
        _cmd(scenes_root, out, *extra),
        env=_env(),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    first = out / "checkpoints" / "step-00000004"
    deadline = time.monotonic() + 240
    try:
        while not first.is_dir() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert first.is_dir(), "no checkpoint appeared"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    assert not (out / "final").exists()
    steps = [int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("step-*")]
    assert max(steps) < 24

    # Resuming with another learning rate is refused with a clear error.
    bad = subprocess.run(
        _cmd(scenes_root, out, *extra, "--resume", "--set", "optim.lr=0.5"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert bad.returncode == 2
    assert "train_config.json" in bad.stderr and "optim.lr" in bad.stderr

    resumed = subprocess.run(
        _cmd(scenes_root, out, *extra, "--resume"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ref, got = _weights(reference_run), _weights(out)
    assert ref.keys() == got.keys()
    differing = [k for k in ref if not torch.equal(ref[k], got[k])]
    assert not differing, f"{len(differing)} tensors differ, e.g. {differing[:3]}"
    rows = [r.split(",")[0] for r in (out / "log.csv").read_text().splitlines()[1:]]
    assert rows == [str(s) for s in range(1, 25)]


def test_pretrain_refuses_a_used_run_dir_without_resume(
    reference_run: Path, scenes_root: Path
) -> None:
    proc = subprocess.run(
        _cmd(scenes_root, reference_run),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 2 and "--resume" in proc.stderr


def test_corrupt_checkpoint_on_resume_names_the_file(
    reference_run: Path, scenes_root: Path, tmp_path: Path
) -> None:
    import shutil

    out = tmp_path / "corrupt"
    shutil.copytree(reference_run, out)
    weights = out / "checkpoints" / "step-00000024" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    proc = subprocess.run(
        _cmd(scenes_root, out, "--resume", "--set", "eval.enabled=false"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert "step-00000024/model.safetensors: truncated" in proc.stderr


def test_run_without_out_goes_under_the_configs_out_dir_and_starts_from_init_from(
    reference_run: Path, scenes_root: Path, tmp_path: Path
) -> None:
    # What a recipe's later stages rely on: configs name their runs' parent directory, and a
    # second stage starts from the weights in model.init_from (lr 0: they must come out intact).
    init = reference_run / "final"
    extra = [
        "--set", "checkpoint.out_dir=myruns",
        "--set", "schedule.max_steps=2",
        "--set", "optim.lr=0",
        "--set", "eval.enabled=false",
        "--set", f'model.init_from="{init}"',
    ]  # fmt: skip
    proc = subprocess.run(
        _cmd(scenes_root, None, *extra),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [p for p in (tmp_path / "myruns").iterdir() if p.name != "latest"]
    assert len(runs) == 1 and (runs[0] / "final" / "config.json").is_file()
    assert not (tmp_path / "runs").exists()
    # a stable path to the newest run, printed with the checkpoint
    latest = tmp_path / "myruns" / "latest"
    assert latest.is_symlink() and latest.resolve() == runs[0].resolve()
    assert (latest / "final" / "model.safetensors").is_file()
    start, got = _weights(reference_run), _weights(runs[0])
    params = [k for k in start if "running_" not in k and "num_batches" not in k]
    assert params and all(torch.equal(start[k], got[k]) for k in params)


@pytest.mark.parametrize(
    ("value", "message"),
    [('""', "model.init_from is empty"), ('"no/such/model"', "not a saved model directory")],
)
def test_init_from_without_a_model_is_refused_before_the_data(
    tmp_path: Path, value: str, message: str
) -> None:
    # The data root does not exist and may not be generated: the check must come first.
    missing = tmp_path / "no_data"
    extra = ["--set", "data.generate_if_missing=false", "--set", f"model.init_from={value}"]
    proc = subprocess.run(
        [*_cmd(missing, tmp_path / "run"), *extra],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr
    assert not missing.exists()


@pytest.mark.parametrize(
    ("preset", "expected"), [(None, "AUTO,STRICT"), ("COMPATIBLE", "COMPATIBLE")]
)
def test_importing_the_package_asks_mkl_for_alignment_independent_results(
    preset: str | None, expected: str
) -> None:
    # On AVX-512 CPUs MKL's results depend on memory alignment unless MKL_CBWR asks for strict
    # reproducibility: a resumed run then drifts from an uninterrupted one (up to 1e-4 after 12
    # steps, measured), which the SIGKILL test above catches on such a machine. A user's own
    # choice is kept.
    env = _env()
    env.pop("MKL_CBWR", None)
    if preset is not None:
        env["MKL_CBWR"] = preset
    code = "import os, neurogshn; print(os.environ['MKL_CBWR'])"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected


def test_latest_link_is_replaced_and_never_clobbers_a_directory(tmp_path: Path) -> None:
    from neurogshn.jobs.pretrain import link_latest

    runs = tmp_path / "runs"
    first, second = runs / "20260101-000000", runs / "20260102-000000"
    first.mkdir(parents=True)
    second.mkdir()
    assert link_latest(first) == runs / "latest"
    assert (runs / "latest").resolve() == first.resolve()
    link_latest(second)
    assert (runs / "latest").resolve() == second.resolve()
    assert sorted(p.name for p in runs.iterdir()) == ["20260101-000000", "20260102-000000",
                                                       "latest"]  # fmt: skip
    # --resume without --out continues the newest run, never the link to the newest finished
    from neurogshn.jobs.pretrain import resolve_run_dir

    link_latest(first)
    for run in (first, second):
        (run / "checkpoints").mkdir()
    assert resolve_run_dir(None, True, runs) == second
    own = tmp_path / "mine"
    (own / "latest").mkdir(parents=True)
    (own / "run").mkdir()
    assert link_latest(own / "run") is None and (own / "latest").is_dir()
