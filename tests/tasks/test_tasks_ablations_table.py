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


def test_every_variant_gets_its_own_colour():
    for n in (2, 10, 11, len(abl.VARIANTS), 20):
        assert len(set(abl.variant_colors(n))) == n, n


def test_missing_metric_is_shown_not_invented():
    results = {"full": [_run(0.8)], "no_stl": [_run(0.7, vqa_acc=float("nan"))]}
    text = abl.markdown_table(results)
    assert "–" in text  # the missing VQA figure
    assert "full > no_stl: **n/a**" in text


def test_job_order_is_seed_major():
    assert abl.job_order(["full", "no_cl"], [0, 1]) == [
        ("full", 0),
        ("no_cl", 0),
        ("full", 1),
        ("no_cl", 1),
    ]


class _FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_schedule_sequential_skips_runs_not_started_before_the_deadline():
    clock = _FakeClock()
    started: list[tuple[str, int]] = []

    def execute(task):
        started.append(task)
        clock.now += 10.0  # every run takes 10 s
        return {"status": "ok", "result": task}

    tasks = abl.job_order(["a", "b"], [0, 1])
    seen = []
    results, skipped = abl.schedule(
        tasks, execute, deadline=15.0, clock=clock, on_result=lambda t, r: seen.append(t)
    )
    # the second run starts at 10 s < 15 s and finishes; the others would start at 20 s
    assert started == [("a", 0), ("b", 0)] and seen == started
    assert list(results) == started and skipped == [("a", 1), ("b", 1)]
    results, skipped = abl.schedule(tasks, execute, deadline=None, clock=clock)
    assert list(results) == tasks and skipped == []


def test_schedule_pool_keeps_jobs_in_flight_in_order_and_stops_at_deadline():
    import threading
    from concurrent.futures import ThreadPoolExecutor

    clock = _FakeClock()
    lock = threading.Lock()
    running = [0]
    peak = [0]

    class RecordingPool(ThreadPoolExecutor):
        def __init__(self) -> None:
            super().__init__(max_workers=4)
            self.submitted: list[tuple[str, int]] = []

        def submit(self, fn, task):
            self.submitted.append(task)
            return super().submit(fn, task)

    def execute(task):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            if task == ("boom", 0):
                raise RuntimeError("worker died")
            return {"status": "ok", "result": task}
        finally:
            with lock:
                running[0] -= 1
                clock.now += 1.0  # the clock advances as runs finish

    tasks = abl.job_order(["a", "boom", "b"], [0, 1, 2])
    with RecordingPool() as pool:
        results, skipped = abl.schedule(
            tasks, execute, jobs=2, deadline=4.0, clock=clock, executor=pool
        )
    started = pool.submitted
    assert peak[0] <= 2  # never more than `jobs` runs at a time, though the pool has 4 workers
    assert 4 <= len(started) < len(tasks)
    assert started == tasks[: len(started)]  # started in seed-major order
    assert skipped == tasks[len(started) :]  # the rest was never started
    assert set(results) == set(started)
    assert results[("boom", 0)]["status"] == "failed"
    assert "RuntimeError: worker died" in results[("boom", 0)]["error"]
    assert results[("a", 0)] == {"status": "ok", "result": ("a", 0)}
