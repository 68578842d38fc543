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
        for key in ("i2t_R@1", "t2i_R@1", "vqa_acc"):
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
