"""`benchmarks/ablations.py --quick` end to end on a minimal setting (tests/tasks)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "ablations.py"


@pytest.mark.slow
def test_ablations_quick_runs_and_reports(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("neurogshn_bench_ablations_q", _PATH)
    abl = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = abl
    spec.loader.exec_module(abl)
    out = tmp_path / "abl.md"
    rc = abl.main(
        [
            "--quick",
            "--variants",
            "full,no_edges",
            "--seeds",
            "0,1",
            "--work",
            str(tmp_path / "w"),
            "--out",
            str(out),
            "--steps",
            "3",
        ]
    )
    assert rc == 0
    text = out.read_text()
    assert "Quick mode" in text and "| `full` |" in text and "| `no_edges` |" in text
    assert "full > no_edges: **" in text
    assert out.with_suffix(".png").stat().st_size > 5000
    runs = json.loads(out.with_suffix(".json").read_text())["results"]
    assert len(runs["full"]) == 2 and len(runs["no_edges"]) == 2
    for r in runs["full"] + runs["no_edges"]:
        for key in (
            "i2t_R@1",
            "t2i_R@1",
            "vqa_acc",
            "relation_swap_acc_itm",
            "attribute_swap_acc_itm",
        ):
            assert 0.0 <= r[key] <= 1.0
    assert "estimated full-size study" in capsys.readouterr().out
    # a rerun reuses the finished runs (no training): fast and identical
    rc = abl.main(
        [
            "--quick",
            "--variants",
            "full,no_edges",
            "--seeds",
            "0,1",
            "--work",
            str(tmp_path / "w"),
            "--out",
            str(out),
            "--steps",
            "3",
        ]
    )
    assert rc == 0
    assert json.loads(out.with_suffix(".json").read_text())["results"] == runs


@pytest.mark.slow
def test_ablations_quick_with_two_jobs_and_a_deadline(tmp_path):
    """``--jobs 2``: concurrent spawned workers, graph caches built once by the parent (the
    workers only read them), per-run timings and device recorded; ``--deadline`` skips runs
    that have not started and says so in the report."""
    spec = importlib.util.spec_from_file_location("neurogshn_bench_ablations_j", _PATH)
    abl = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = abl
    spec.loader.exec_module(abl)
    out = tmp_path / "abl.md"
    common = ["--quick", "--variants", "full,no_edges", "--work", str(tmp_path / "w")]
    common += ["--out", str(out), "--steps", "2", "--images", "16,4,8", "--jobs", "2"]
    assert abl.main([*common, "--seeds", "0"]) == 0
    text = out.read_text()
    assert "| `full` |" in text and "| `no_edges` |" in text
    assert "Runs: 2 at a time on cpu" in text
    raw = json.loads(out.with_suffix(".json").read_text())
    assert raw["jobs"] == 2 and raw["failures"] == [] and raw["not_run"] == []
    assert raw["size"]["steps"] == 2 and raw["size"]["train"] == 16  # reached the workers
    for variant in ("full", "no_edges"):
        res = json.loads((tmp_path / "w" / "results" / f"{variant}-seed0.json").read_text())
        assert res["steps"] == 2 and res["train_images"] == 16 and res["device"].startswith("cpu")
        assert 0 < res["train_seconds"] <= res["total_seconds"]
        assert 0.0 <= res["vqa_acc"] <= 1.0
    # one cache per (nodes, edges, split), built by the parent and never rebuilt by a worker
    caches = raw["graph_caches"]
    assert sorted((c["edges"], c["split"]) for c in caches) == [
        ("full", "test"),
        ("full", "train"),
        ("none", "test"),
        ("none", "train"),
    ]
    for c in caches:
        files = [p for p in Path(c["path"]).rglob("*") if p.is_file()]
        assert max(p.stat().st_mtime_ns for p in files) == c["mtime_ns"]
    # a second seed with the deadline already passed: finished runs reused, new ones not run
    assert abl.main([*common, "--seeds", "0,1", "--deadline", "0"]) == 0
    text = out.read_text()
    assert "Runs not run (deadline):" in text and "- `no_edges` seed 1" in text
    raw2 = json.loads(out.with_suffix(".json").read_text())
    assert raw2["results"] == raw["results"]
    assert raw2["not_run"] == ["`full` seed 1", "`no_edges` seed 1"]
    assert not (tmp_path / "w" / "results" / "full-seed1.json").exists()
