"""The ablation study's aggregation, verdicts, table and chart (tests/tasks)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "ablations.py"
_spec = importlib.util.spec_from_file_location("neurogshn_bench_ablations", _PATH)
abl = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = abl
_spec.loader.exec_module(abl)


def _run(v: float, **kw: float) -> dict[str, float]:
    r = {k: v for k, _ in abl.METRICS}
    r.update(kw)
    return r


def test_mean_std_and_verdict():
    m, s = abl.mean_std([0.5, 0.7, 0.9])
    assert m == pytest.approx(0.7) and s == pytest.approx(0.2)
    assert abl.mean_std([0.4]) == (0.4, 0.0)
    assert math.isnan(abl.mean_std([float("nan")])[0])
    # full 0.8±0.01 vs 0.6±0.01: holds
    assert abl.verdict([0.79, 0.8, 0.81], [0.59, 0.6, 0.61]) == "yes"
    # ablation better by more than the std: does not hold
    assert abl.verdict([0.59, 0.6, 0.61], [0.79, 0.8, 0.81]) == "no"
    # difference 0.05 within std 0.1: unclear
    assert abl.verdict([0.7, 0.8, 0.9], [0.65, 0.75, 0.85]) == "unclear"
    assert abl.verdict([], [0.5]) == "n/a"


def test_table_says_where_a_claim_fails(tmp_path):
    results = {
        "full": [_run(0.80), _run(0.81), _run(0.82)],
        "gat_only": [_run(0.60), _run(0.61), _run(0.62)],  # full clearly better
        "snn_only": [_run(0.90), _run(0.91), _run(0.92)],  # ablation clearly better
        "no_cl": [_run(0.80), _run(0.83), _run(0.79)],  # within noise
    }
    text = abl.markdown_table(results)
    lines = text.splitlines()
    assert lines[0].startswith("| variant |") and "claim holds?" in lines[0]
    row = {ln.split("|")[1].strip(): ln for ln in lines[2:]}
    assert "(reference)" in row["`full`"]
    assert "full > gat_only: **yes**" in row["`gat_only`"]
    assert "full > snn_only: **no**" in row["`snn_only`"]
    assert "full > no_cl: **unclear**" in row["`no_cl`"]
    assert "81.0 ± 1.0" in row["`full`"]
    png = abl.bar_chart(results, tmp_path / "abl.png")
    assert png.is_file() and png.stat().st_size > 5000


def test_missing_metric_is_shown_not_invented():
    results = {"full": [_run(0.8)], "no_stl": [_run(0.7, vqa_acc=float("nan"))]}
    text = abl.markdown_table(results)
    assert "–" in text  # the missing VQA figure
    assert "full > no_stl: **n/a**" in text
