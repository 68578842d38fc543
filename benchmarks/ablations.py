"""Ablation study: does each part of GSHN earn its place on our benchmark?

One command trains and evaluates every variant on the same data, with the same budget (steps,
batch size, learning rate, fine-tuning budget) and the same seeds, then writes a markdown table
(mean ± std over seeds) and a bar chart beside it::

    python benchmarks/ablations.py                  # default size, 3 seeds (long: see --estimate)
    python benchmarks/ablations.py --quick          # CI-sized: tiny data, few steps
    python benchmarks/ablations.py --variants full,gat_only --seeds 0,1,2 --out docs/ablations.md
    python benchmarks/ablations.py --device cuda --jobs 9 --deadline 480   # many runs at once

Variants (each one change from ``full``):

=============  =================================================================
full           GSHN as configured (spiking + GAT, ITC + CL + STL + ITM, panoptic)
gat_only       no spiking branch (``model.mode = gat_only``; CL and STL act on the spikes,
               so they are off too)
snn_only       no GAT stage (``model.mode = snn_only``)
no_cl          spatio-temporal contrastive loss off (``loss.cl = 0``)
no_stl         Spiked Text Learning off (``loss.stl = 0``)
no_itm_hn      no hard negatives from the data (``data.hard_negative_kinds = []``): ITM
               keeps its in-batch mined negatives, ITC loses the swapped-caption negatives
patches        a regular patch grid instead of panoptic segments (``graph.nodes``)
boxes          segment bounding boxes instead of masks (``graph.nodes = boxes``)
no_edges       bag of segments: no graph edges (``graph.edges = none``)
no_grounding   the ITM head's phrase-grounding term off (``itm_grounding_weight = 0``)
no_mlm         masked language modelling off (``itm_mlm_weight = 0``)
=============  =================================================================

Per run: pretrain (``neurogshn.training``), zero-shot retrieval on the eval split with the
hard-negative diagnostics, then a VQA head fine-tuned on the training split's VQA file for a
fixed budget and scored on the eval split. Reported: i2t R@1, t2i R@1 (ITC), relational and
attribute accuracy (scored by the ITM head on the first ``hn_images`` eval images' hard
negatives), VQA accuracy (the default task head: ITM evidence and soft counts).

"Claim holds?" compares ``full`` with each ablation per metric: **yes** when full's mean is
higher by more than the larger of the two seed standard deviations, **no** when the ablation is
higher by that margin, **unclear** otherwise. The overall verdict uses the mean of the five
metrics per seed. Nothing is tuned per variant.

Every finished run is stored as JSON under ``--work`` and reused by a rerun (delete it to
redo), so a long study can be interrupted and continued.

``--jobs N`` runs N (variant, seed) runs at a time, each in a spawned worker process (CUDA-safe)
with ``cpu_count // N`` threads, started seed-major (all variants of the first seed first, so an
interrupted study holds complete seeds). The parent first builds every graph cache the runs
need, one after the other, so the workers only read them. ``--deadline SECONDS`` (from program
start) starts no run after that time; running ones finish and the report lists the rest as not
run. Each run records ``train_seconds``, ``total_seconds`` and its ``device``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: variant name → (TrainConfig ``--set`` overrides, one-line description)
VARIANTS: dict[str, tuple[tuple[str, ...], str]] = {
    "full": ((), "spiking + GAT, ITC + CL + STL + ITM, panoptic segments, full edges"),
    "gat_only": (
        ("model.overrides.mode=gat_only", "loss.cl=0", "loss.stl=0"),
        "no spiking branch (hence no CL/STL, which act on spikes)",
    ),
    "no_spike_losses": (
        ("loss.cl=0", "loss.stl=0"),
        "spiking branch kept, CL and STL off (tells the branch from its losses in gat_only)",
    ),
    "snn_only": (("model.overrides.mode=snn_only",), "no GAT stage"),
    "no_cl": (("loss.cl=0",), "no spatio-temporal contrastive learning"),
    "no_stl": (("loss.stl=0",), "no Spiked Text Learning"),
    "no_itm_hn": (
        ("data.hard_negative_kinds=[]",),
        "no hard negatives from the data (ITM keeps in-batch negatives)",
    ),
    "patches": (("graph.nodes=patches",), "patch grid instead of panoptic segments"),
    "boxes": (("graph.nodes=boxes",), "boxes instead of masks"),
    "no_edges": (("graph.edges=none",), "bag of segments (no edges)"),
    "no_grounding": (
        ("model.overrides.itm_grounding_weight=0",),
        "no phrase-grounding term on the ITM head's attention",
    ),
    "no_mlm": (
        ("model.overrides.itm_mlm_weight=0",),
        "no masked relation prediction on the ITM head",
    ),
}

#: (result key, column header)
METRICS: tuple[tuple[str, str], ...] = (
    ("i2t_R@1", "i2t R@1"),
    ("t2i_R@1", "t2i R@1"),
    ("relation_swap_acc_itm", "relation-swap acc (ITM)"),
    ("attribute_swap_acc_itm", "attribute-swap acc (ITM)"),
    ("vqa_acc", "VQA acc"),
)


@dataclass
class StudySize:
    """Data size and budget of one study (the same for every variant and seed).

    Args:
        train, val, test: generated images per split.
        image_size: generated image side.
        steps: pretraining optimizer steps.
        batch_size: pretraining images per step.
        vqa_epochs: VQA fine-tuning epochs (backbone frozen, head only).
        vqa_max_train: VQA training questions used (``None``: all).
        model: named model configuration (``GSHN.from_config_name``).
        hn_images: the relational / attribute diagnostics are scored with the ITM head (the
            model's image-text matcher, as ``neurogshn evaluate --task retrieval`` does) on
            the hard negatives of the first ``hn_images`` eval images.
    """

    train: int
    val: int
    test: int
    image_size: int
    steps: int
    batch_size: int
    vqa_epochs: int
    vqa_max_train: int | None
    model: str = "default"
    hn_images: int = 200

    def overrides(self) -> list[str]:
        return [
            f"data.generate.train={self.train}",
            f"data.generate.val={self.val}",
            f"data.generate.test={self.test}",
            f"data.generate.image_size={self.image_size}",
            f"schedule.max_steps={self.steps}",
            f"schedule.batch_size={self.batch_size}",
            f"model.name={self.model}",
        ]


DEFAULT_SIZE = StudySize(2000, 200, 1000, 128, 1500, 64, 5, None)
QUICK_SIZE = StudySize(32, 8, 16, 64, 6, 8, 1, 64, model="gshn-tiny", hn_images=8)


# ------------------------------------------------------------------------------------------
# Aggregation, verdicts, table, chart (pure; unit-tested)
# ------------------------------------------------------------------------------------------
def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value); NaNs are dropped."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return float("nan"), float("nan")
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def composite(run: Mapping[str, float]) -> float:
    """Mean of the reported metrics of one run (NaN when one is missing)."""
    vals = [run.get(k, float("nan")) for k, _ in METRICS]
    return float("nan") if any(v is None or math.isnan(v) for v in vals) else statistics.fmean(vals)


def verdict(full: Sequence[float], ablated: Sequence[float]) -> str:
    """``yes`` if full beats the ablation by more than the larger seed std, ``no`` if the
    ablation wins by that margin, ``unclear`` otherwise (``n/a`` without data)."""
    mf, sf = mean_std(full)
    ma, sa = mean_std(ablated)
    if math.isnan(mf) or math.isnan(ma):
        return "n/a"
    margin = max(sf, sa)
    if mf - ma > margin:
        return "yes"
    if ma - mf > margin:
        return "no"
    return "unclear"


def aggregate(results: Mapping[str, Sequence[Mapping[str, float]]]) -> dict[str, dict[str, Any]]:
    """Per variant: mean/std per metric and of the composite, plus the per-seed values."""
    out: dict[str, dict[str, Any]] = {}
    for variant, runs in results.items():
        row: dict[str, Any] = {"n": len(runs)}
        for key, _ in (*METRICS, ("composite", "composite")):
            vals = [composite(r) if key == "composite" else r.get(key, float("nan")) for r in runs]
            row[key] = {"mean": mean_std(vals)[0], "std": mean_std(vals)[1], "values": vals}
        out[variant] = row
    return out


def _pct(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "–"
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def markdown_table(
    results: Mapping[str, Sequence[Mapping[str, float]]], reference: str = "full"
) -> str:
    """The ablation table (percent, mean ± std over seeds) with the claim columns."""
    agg = aggregate(results)
    head = ["variant", "change", "seeds", *[h for _, h in METRICS], "claim holds?", "per metric"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ref = results.get(reference)
    for variant, runs in results.items():
        row = agg[variant]
        cells = [f"`{variant}`", VARIANTS.get(variant, ((), ""))[1], str(row["n"])]
        cells += [_pct(row[k]["mean"], row[k]["std"]) for k, _ in METRICS]
        if variant == reference or ref is None:
            cells += ["(reference)", ""]
        else:
            overall = verdict([composite(r) for r in ref], [composite(r) for r in runs])
            per = ", ".join(
                f"{h}: {verdict([r.get(k, math.nan) for r in ref], [r.get(k, math.nan) for r in runs])}"  # noqa: E501
                for k, h in METRICS
            )
            cells += [f"full > {variant}: **{overall}**", per]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def variant_colors(n: int) -> list[tuple[float, float, float, float]]:
    """``n`` bar colours, all different up to 20 variants (tab10, then tab20)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(j % cmap.N) for j in range(n)]


def bar_chart(results: Mapping[str, Sequence[Mapping[str, float]]], path: str | Path) -> Path:
    """Grouped bars (one group per metric, one bar per variant) with seed-std error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agg = aggregate(results)
    variants = list(results)
    n = len(variants)
    width = 0.8 / max(n, 1)
    fig, ax = plt.subplots(
        figsize=(min(14.0, 4.0 + 0.9 * len(METRICS) + 0.25 * n * len(METRICS) / 2), 4.8)
    )
    colors = variant_colors(n)
    for j, variant in enumerate(variants):
        means = [100 * agg[variant][k]["mean"] for k, _ in METRICS]
        stds = [100 * agg[variant][k]["std"] for k, _ in METRICS]
        xs = [i - 0.4 + width * (j + 0.5) for i in range(len(METRICS))]
        ax.bar(
            xs,
            [0 if math.isnan(m) else m for m in means],
            width,
            yerr=stds,
            capsize=2,
            label=variant,
            color=colors[j],
            edgecolor="black",
            linewidth=0.3,
        )
    chance_label = "chance (50%, pairwise diagnostics)"
    for i, (key, _) in enumerate(METRICS):
        if key in ("relation_swap_acc_itm", "attribute_swap_acc_itm"):
            ax.hlines(
                50,
                i - 0.45,
                i + 0.45,
                colors="black",
                linestyles="--",
                linewidth=1,
                zorder=3,
                label=chance_label,
            )
            chance_label = None
    ax.set_xticks(range(len(METRICS)))
    ax.set_xticklabels([h for _, h in METRICS])
    ax.set_ylabel("%  (mean ± std over seeds)")
    ax.set_ylim(0, 105)
    ax.legend(ncol=min(n + 1, 5), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08))
    ax.set_title("GSHN ablations")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------
# Running
# ------------------------------------------------------------------------------------------
def train_config(
    variant: str,
    seed: int,
    size: StudySize,
    data_root: Path,
    run_dir: Path,
    base_overrides: Sequence[str] = (),
    device: str = "cpu",
) -> Any:
    """The ``TrainConfig`` of one (variant, seed) run: the study size, then ``--set``, then the
    variant's own change."""
    from neurogshn.training.config import TrainConfig

    overrides = [
        *size.overrides(),
        f"data.root={data_root}",
        f"checkpoint.out_dir={run_dir}",
        "checkpoint.every_steps=0",
        "log.progress=false",
        "eval.enabled=true",
        "eval.untrained=false",
        f"seed={seed}",
        f"device={device}",
        *base_overrides,
        *VARIANTS[variant][0],
    ]
    return TrainConfig().with_overrides(overrides)


def device_name(device: Any) -> str:
    """A readable name of the device a run uses (the GPU model on CUDA)."""
    import platform

    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"{dev.type} ({platform.processor() or platform.machine()})"


def run_one(
    variant: str,
    seed: int,
    size: StudySize,
    data_root: Path,
    work: Path,
    base_overrides: Sequence[str] = (),
    device: str = "cpu",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Pretrain one variant with one seed (:func:`neurogshn.jobs.pretrain.run_pretraining`,
    which also evaluates retrieval + hard negatives on the eval split), then fine-tune a VQA
    head (backbone frozen) on the training split and score it on the eval split."""
    import shutil

    from neurogshn.graph.config import graph_getter, load_graphs
    from neurogshn.jobs.pretrain import run_pretraining
    from neurogshn.model.gshn import GSHN
    from neurogshn.tasks.finetune import build_task_model, evaluate_task, finetune
    from neurogshn.tasks.finetune_config import FinetuneConfig
    from neurogshn.tasks.task_data import filter_examples, load_task_examples
    from neurogshn.utils.runtime import resolve_device

    run_dir = work / f"{variant}-seed{seed}"
    if run_dir.exists():  # an interrupted run: start it again from scratch
        shutil.rmtree(run_dir)
    cfg = train_config(variant, seed, size, data_root, run_dir, base_overrides, device)
    dev = resolve_device(None if cfg.device == "auto" else cfg.device)
    t0 = time.perf_counter()
    pre = run_pretraining(cfg, run_dir, log=lambda *a, **k: None)
    train_s = pre.timings.get("train_s", time.perf_counter() - t0)
    out: dict[str, Any] = dict(pre.trained or {})

    # VQA: the same fixed budget for every variant; backbone frozen, so VQA measures what the
    # pretrained representation carries.
    model = GSHN.from_pretrained(pre.final_dir, device=dev)
    spec = cfg.graph
    split = cfg.data.eval_split
    labels, train_ex, _ = load_task_examples(data_root, "vqa", cfg.data.train_split)
    train_graphs = load_graphs(
        data_root, cfg.data.train_split, spec, cfg.graph.cache_dir, progress=False, device=dev
    )
    test_graphs = load_graphs(
        data_root, split, spec, cfg.graph.cache_dir, progress=False, device=dev
    )
    get_train, has_train = graph_getter(train_graphs)
    train_ex, _ = filter_examples(train_ex, has_train)
    if size.vqa_max_train is not None:
        train_ex = train_ex[: size.vqa_max_train]
    _, test_ex, _ = load_task_examples(data_root, "vqa", split, labels)
    get_test, has_test = graph_getter(test_graphs)
    test_ex, _ = filter_examples(test_ex, has_test)
    out.update(itm_diagnostics(model, data_root, split, test_graphs, size.hn_images))
    task_model = build_task_model(model, "vqa", labels)
    ft = FinetuneConfig(epochs=size.vqa_epochs, batch_size=32, lr=1e-3, backbone_lr=0.0, seed=seed)
    finetune(task_model, train_ex, get_train, ft, progress=False, log=lambda s: None)
    out.update(evaluate_task(task_model, test_ex, get_test))
    out["train_seconds"] = float(train_s)
    out["total_seconds"] = time.perf_counter() - t0
    out["device"] = device_name(dev)
    log(
        f"{variant} seed {seed}: i2t R@1 {100 * out['i2t_R@1']:.1f}, t2i R@1 "
        f"{100 * out['t2i_R@1']:.1f}, "
        f"rel {100 * out.get('relation_swap_acc_itm', math.nan):.1f}, "
        f"attr {100 * out.get('attribute_swap_acc_itm', math.nan):.1f}, "
        f"VQA {100 * out['vqa_acc']:.1f} ({out['total_seconds']:.0f} s)"
    )
    return out


def itm_diagnostics(
    model: Any, data_root: Path, split: str, graphs: Any, images: int
) -> dict[str, float]:
    """Relational / attribute / object-replacement accuracy scored by the model's ITM head
    (with its relation term) on the hard negatives of the first ``images`` images of
    ``split`` (``*_acc_itm``); empty when the model has no ITM head."""
    from neurogshn.data.coco import CocoPanopticDataset
    from neurogshn.tasks.retrieval import evaluate_retrieval
    from neurogshn.tasks.task_data import task_file

    if getattr(model, "itm_head", None) is None or images <= 0:
        return {}
    found = evaluate_retrieval(
        model,
        graphs,
        CocoPanopticDataset(data_root, split),
        hard_negatives=task_file(data_root, "hard_negatives", split),
        max_images=images,
        hard_negative_scorer="itm",
    )
    return {k: v for k, v in found.items() if k.endswith("_acc_itm")}


def prebuild_graph_caches(
    variants: Sequence[str],
    size: StudySize,
    data_root: Path,
    work: Path,
    base_overrides: Sequence[str] = (),
    device: str = "cpu",
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Build, one after the other, every graph cache the runs of ``variants`` will read, so
    that concurrent runs only ever load them (never race on building the same entry).

    One cache per distinct (segmenter, backbone, nodes, edges, cache_dir, split) among the
    variants' configurations (``graph.nodes`` panoptic/patches/boxes, ``graph.edges``
    full/none; ``--set`` may change any of them), for the pretraining and evaluation splits.
    Each is loaded with :func:`neurogshn.jobs.pretrain.load_split`, the function
    :func:`~neurogshn.jobs.pretrain.run_pretraining` uses, with the same arguments (the cache
    key does not depend on the device, which only runs the backbone).

    Returns:
        One record per cache: the graph settings, ``split``, ``path`` of the entry and
        ``mtime_ns`` (newest file in it; a later rebuild would change it).
    """
    from neurogshn.jobs.pretrain import load_split
    from neurogshn.training.distributed import DistInfo
    from neurogshn.utils.runtime import resolve_device

    seen: set[tuple[Any, ...]] = set()
    records: list[dict[str, Any]] = []
    for variant in variants:
        cfg = train_config(variant, 0, size, data_root, work / "_cache", base_overrides, device)
        dev = resolve_device(None if cfg.device == "auto" else cfg.device)
        g = cfg.graph
        for split in dict.fromkeys((cfg.data.train_split, cfg.data.eval_split)):
            key = (g.segmenter, g.backbone, g.nodes, g.edges, g.cache_dir, split)
            if key in seen:
                continue
            seen.add(key)
            t = time.perf_counter()
            graphs = load_split(cfg, Path(cfg.data.root), split, DistInfo(), dev)
            entry = Path(graphs.path) if getattr(graphs, "path", None) else None
            records.append(
                {
                    "segmenter": g.segmenter,
                    "backbone": g.backbone,
                    "nodes": g.nodes,
                    "edges": g.edges,
                    "split": split,
                    "path": str(entry) if entry else None,
                    "mtime_ns": _newest_mtime_ns(entry) if entry else None,
                }
            )
            log(
                f"graph cache {g.nodes}/{g.edges} {split}: {len(graphs)} graphs "
                f"({time.perf_counter() - t:.1f} s)"
            )
    return records


def _newest_mtime_ns(directory: Path) -> int:
    return max((p.stat().st_mtime_ns for p in directory.rglob("*") if p.is_file()), default=0)


# ------------------------------------------------------------------------------------------
# Scheduling (seed-major, N concurrent runs, deadline)
# ------------------------------------------------------------------------------------------
def job_order(variants: Sequence[str], seeds: Sequence[int]) -> list[tuple[str, int]]:
    """(variant, seed) pairs, seed-major: every variant of the first seed comes first, so an
    interrupted study holds complete seeds."""
    return [(variant, seed) for seed in seeds for variant in variants]


def schedule(
    tasks: Sequence[Any],
    execute: Callable[[Any], Any],
    *,
    jobs: int = 1,
    deadline: float | None = None,
    clock: Callable[[], float] = time.time,
    executor: Any = None,
    on_result: Callable[[Any, Any], None] | None = None,
) -> tuple[dict[Any, Any], list[Any]]:
    """Run ``execute(task)`` for each task, in order, at most ``jobs`` at a time.

    Tasks are started in the given order; one that has not started when ``clock()`` reaches
    ``deadline`` is skipped (running ones finish). With ``jobs > 1`` the tasks go to
    ``executor`` (a ``concurrent.futures`` executor with at least ``jobs`` workers); a task
    whose future raises (e.g. a crashed worker process) gets ``{"status": "failed", "error":
    ...}`` as its result.

    Args:
        tasks: hashable task descriptions.
        execute: ``execute(task) -> result`` (picklable for a process pool).
        jobs: concurrent tasks; 1 runs them one after the other in this process.
        deadline: ``clock()`` value after which no task starts (``None``: no deadline).
        clock: time source compared with ``deadline``.
        executor: the pool for ``jobs > 1``.
        on_result: called as ``on_result(task, result)`` as each task finishes.

    Returns:
        ``(results, skipped)``: task → result in completion order, and the skipped tasks.
    """
    from collections import deque
    from concurrent.futures import FIRST_COMPLETED, wait

    results: dict[Any, Any] = {}
    skipped: list[Any] = []

    def finish(task: Any, result: Any) -> None:
        results[task] = result
        if on_result is not None:
            on_result(task, result)

    def expired() -> bool:
        return deadline is not None and clock() >= deadline

    if jobs <= 1 or executor is None:
        for task in tasks:
            if expired():
                skipped.append(task)
                continue
            finish(task, execute(task))
        return results, skipped

    pending = deque(tasks)
    in_flight: dict[Any, Any] = {}
    while pending or in_flight:
        while pending and len(in_flight) < jobs:
            task = pending.popleft()
            if expired():
                skipped.append(task)
                continue
            try:
                in_flight[executor.submit(execute, task)] = task
            except Exception as exc:  # e.g. BrokenProcessPool after a worker died
                finish(task, {"status": "failed", "error": f"{type(exc).__name__}: {exc}"})
        if not in_flight:
            continue
        done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
        for future in done:
            task = in_flight.pop(future)
            try:
                result = future.result()
            except Exception as exc:
                result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
            finish(task, result)
    return results, skipped


def _init_worker(threads: int) -> None:
    """Worker start-up (before any torch-heavy import): ``threads`` intra-op threads."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(threads)


def _run_job(job: Mapping[str, Any], task: tuple[str, int]) -> dict[str, Any]:
    """Run ``task = (variant, seed)`` of the study described by ``job`` (plain picklable
    values: size, data, runs, results, overrides, device); writes
    ``<results>/<variant>-seed<seed>.json`` atomically and never raises (a failure comes back
    as ``{"status": "failed", "error": ...}``)."""
    from neurogshn.utils.io import write_json_atomic

    variant, seed = task[0], int(task[1])
    size = StudySize(**job["size"])
    try:
        res = run_one(
            variant,
            seed,
            size,
            Path(job["data"]),
            Path(job["runs"]),
            job["overrides"],
            job["device"],
        )
        res = {**res, "seed": seed, "steps": size.steps, "train_images": size.train}
        write_json_atomic(Path(job["results"]) / f"{variant}-seed{seed}.json", res)
    except Exception as exc:  # report it in the table, go on with the others
        import traceback

        traceback.print_exc()
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    return {"status": "ok", "result": res}


def _process_pool(jobs: int) -> Any:
    """``jobs`` spawned worker processes (CUDA-safe), each with cpu_count // jobs threads."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, (cpus or 1) // jobs)
    # The workers unpickle functions by module name: use the importable copy of this module
    # (``benchmarks.ablations``, the repository root is on sys.path) whatever name it runs as.
    mod = _importable_self()
    return ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=mod._init_worker,
        initargs=(threads,),
    ), mod._run_job


def _importable_self() -> Any:
    import importlib

    return importlib.import_module("benchmarks.ablations")


def ensure_data(root: Path, size: StudySize, seed: int = 0) -> Path:
    """Generate the relational scenes into ``root`` unless it already has annotations."""
    if (root / "annotations").is_dir():
        return root
    from neurogshn.data.relational.scenes import generate_scenes

    return generate_scenes(
        root,
        seed=seed,
        splits={"train": size.train, "val": size.val, "test": size.test},
        image_size=size.image_size,
    )


def write_report(
    results: Mapping[str, Sequence[Mapping[str, float]]],
    out: Path,
    size: StudySize,
    command: str,
    quick: bool,
    wall_s: float,
    estimate_s: float | None,
    failures: Sequence[str] = (),
    *,
    jobs: int = 1,
    device: str = "",
    not_run: Sequence[str] = (),
    graph_caches: Sequence[Mapping[str, Any]] = (),
) -> None:
    """Markdown (table + how it was made) and the PNG beside it; the raw results as JSON."""
    png = out.with_suffix(".png")
    bar_chart(results, png)
    seeds = sorted({int(r.get("seed", -1)) for runs in results.values() for r in runs})
    lines = [
        "# Ablations",
        "",
        (
            "**Quick mode (CI-sized: tiny data, a few steps) — these figures check that the "
            "pipeline runs; they say nothing about the paper's claims.**"
            if quick
            else "Ablation study (sizes below)."
        ),
        "",
        f"Command: `{command}`  ",
        f"Data: generated relational scenes, train/val/test = {size.train}/{size.val}/"
        f"{size.test} images ({size.image_size} px); pretraining {size.steps} steps × "
        f"{size.batch_size} images; VQA head {size.vqa_epochs} epoch(s), backbone frozen; "
        f"ITM-scored diagnostics on the first {size.hn_images} test images.  ",
        f"Seeds: {', '.join(map(str, seeds))}. Wall time {wall_s / 60:.1f} min"
        + (
            f"; estimated full-size run: {estimate_s / 3600:.1f} h on this machine (a lower "
            "bound: scaled from these quick runs by steps × batch and images, but the default "
            "model is larger than the quick one)"
            if estimate_s
            else ""
        )
        + ".  ",
        f"Runs: {jobs} at a time{f' on {device}' if device else ''}.",
        "",
        "Figures in percent, mean ± sample std over seeds. Retrieval on the test split "
        "(zero-shot after pretraining, ITC); relational / attribute accuracy: true caption vs "
        "its relation- / attribute-swapped twin scored by the ITM head (chance 50%, ties count "
        "as wrong); VQA on the test split, default task head (ITM evidence, soft counts). "
        "*Claim holds?*: full beats the ablation by more than the larger seed std on the mean "
        "of the five metrics (**yes**), the ablation wins by that margin (**no**), or "
        "neither (**unclear**). See docs/tasks.md for the metric definitions.",
        "",
        markdown_table(results),
        "",
        f"![ablation bar chart]({png.name})",
        "",
    ]
    if failures:
        lines += ["Runs that failed (left out of the table):", ""]
        lines += [f"- {f}" for f in failures] + [""]
    if not_run:
        lines += ["Runs not run (deadline):", ""]
        lines += [f"- {f}" for f in not_run] + [""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    raw = out.with_suffix(".json")
    raw.write_text(
        json.dumps(
            {
                "results": results,
                "size": size.__dict__,
                "jobs": jobs,
                "device": device,
                "failures": list(failures),
                "not_run": list(not_run),
                "graph_caches": list(graph_caches),
            },
            indent=2,
        )
        + "\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized: tiny data, few steps")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (>= 3 for std)")
    parser.add_argument("--data", type=Path, default=None, help="data root (generated if empty)")
    parser.add_argument("--work", type=Path, default=None, help="run directory")
    parser.add_argument("--out", type=Path, default=None, help="markdown report path")
    parser.add_argument("--steps", type=int, default=None, help="override pretraining steps")
    parser.add_argument(
        "--images", default=None, metavar="TRAIN,VAL,TEST", help="override generated split sizes"
    )
    parser.add_argument("--model", default=None, help="override the named model configuration")
    parser.add_argument("--vqa-epochs", type=int, default=None, help="override VQA head epochs")
    parser.add_argument(
        "--vqa-max-train", type=int, default=None, help="override VQA training questions used"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra TrainConfig override for every variant (e.g. model.name=tiny)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="(variant, seed) runs at a time, each in its own process (1: one after the other "
        "in this process); each worker uses cpu_count // jobs threads",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=None,
        metavar="SECONDS",
        help="start no run after this many seconds from program start (running ones finish; "
        "the report lists the others as not run)",
    )
    parser.add_argument(
        "--estimate",
        action="store_true",
        help="only print the estimated full-size time from finished quick runs",
    )
    t_start = time.time()
    t0 = time.perf_counter()
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    size = QUICK_SIZE if args.quick else DEFAULT_SIZE
    if args.steps is not None:
        size = StudySize(**{**size.__dict__, "steps": args.steps})
    if args.images is not None:
        tr, va, te = (int(x) for x in args.images.split(","))
        size = StudySize(**{**size.__dict__, "train": tr, "val": va, "test": te})
    if args.model is not None:
        size = StudySize(**{**size.__dict__, "model": args.model})
    if args.vqa_epochs is not None:
        size = StudySize(**{**size.__dict__, "vqa_epochs": args.vqa_epochs})
    if args.vqa_max_train is not None:
        size = StudySize(**{**size.__dict__, "vqa_max_train": args.vqa_max_train})
    tag = "quick" if args.quick else "full"
    work = args.work or REPO / "runs" / f"ablations-{tag}"
    data = args.data or work / "data"
    out = args.out or (work / "ablations.md" if args.quick else REPO / "docs" / "ablations.md")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    results_dir = work / "results"
    if args.estimate:
        est = estimate_full_seconds(results_dir, len(VARIANTS) * 3)
        print(
            "no finished quick runs" if est is None else f"estimated full run: {est / 3600:.1f} h"
        )
        return 0

    ensure_data(data, size)
    done: dict[tuple[str, int], dict[str, Any]] = {}
    todo: list[tuple[str, int]] = []
    for variant, seed in job_order(variants, seeds):
        path = results_dir / f"{variant}-seed{seed}.json"
        if path.is_file():
            done[(variant, seed)] = json.loads(path.read_text())
        else:
            todo.append((variant, seed))
    failures: list[str] = []
    not_run: list[str] = []
    caches: list[dict[str, Any]] = []
    jobs = max(1, min(args.jobs, len(todo))) if todo else 1
    deadline = None if args.deadline is None else t_start + args.deadline
    if todo and deadline is not None and time.time() >= deadline:
        not_run = [f"`{v}` seed {s}" for v, s in todo]
        print(f"deadline passed: {len(not_run)} run(s) not started: {', '.join(not_run)}")
        todo = []
    if todo:
        caches = prebuild_graph_caches(
            list(dict.fromkeys(v for v, _ in todo)),
            size,
            data,
            work / "runs",
            args.set,
            args.device,
        )

        job = {
            "size": dict(size.__dict__),
            "data": str(data.resolve()),
            "runs": str((work / "runs").resolve()),
            "results": str(results_dir.resolve()),
            "overrides": list(args.set),
            "device": args.device,
        }

        n_done = 0

        def on_result(task: tuple[str, int], outcome: Mapping[str, Any]) -> None:
            nonlocal n_done
            n_done += 1
            variant, seed = task
            if outcome.get("status") == "ok":
                done[task] = outcome["result"]
                print(f"[{n_done}/{len(todo)}] {variant} seed {seed}: done", flush=True)
            else:
                print(f"{variant} seed {seed}: FAILED: {outcome.get('error')}", flush=True)
                failures.append(f"`{variant}` seed {seed}: {outcome.get('error')}")

        if jobs == 1:
            _, skipped = schedule(
                todo, partial(_run_job, job), deadline=deadline, on_result=on_result
            )
        else:
            pool, run_job = _process_pool(jobs)
            with pool:
                _, skipped = schedule(
                    todo,
                    partial(run_job, job),
                    jobs=jobs,
                    deadline=deadline,
                    executor=pool,
                    on_result=on_result,
                )
        not_run = [f"`{v}` seed {s}" for v, s in skipped]
        if not_run:
            print(f"deadline passed: {len(not_run)} run(s) not started: {', '.join(not_run)}")
    results: dict[str, list[dict[str, Any]]] = {
        v: [done[(v, s)] for s in seeds if (v, s) in done] for v in variants
    }
    devices = sorted({str(r["device"]) for r in done.values() if r.get("device")})
    device = ", ".join(devices) if devices else args.device
    wall = time.perf_counter() - t0
    estimate = estimate_full_seconds(results_dir, len(VARIANTS) * 3) if args.quick else None
    command = "python benchmarks/ablations.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    write_report(
        results,
        out,
        size,
        command.strip(),
        args.quick,
        wall,
        estimate,
        failures,
        jobs=args.jobs,
        device=device,
        not_run=not_run,
        graph_caches=caches,
    )
    print(markdown_table(results))
    print(f"wrote {out} and {out.with_suffix('.png')} ({wall / 60:.1f} min)")
    if estimate:
        print(
            f"estimated full-size study ({len(VARIANTS)} variants × 3 seeds, "
            f"{DEFAULT_SIZE.steps} steps, {DEFAULT_SIZE.test} test images): "
            f"{estimate / 3600:.1f} h on this machine (lower bound: scaled from gshn-tiny "
            "quick runs; the default model is larger)"
        )
    return 0


def estimate_full_seconds(results_dir: Path, runs: int) -> float | None:
    """Scale the measured quick runs to the default size (pretraining ∝ steps × batch; the
    evaluation and VQA parts ∝ images)."""
    times = []
    for p in results_dir.glob("*.json"):
        r = json.loads(p.read_text())
        if "train_seconds" in r and r.get("steps"):
            train = (
                r["train_seconds"]
                * (DEFAULT_SIZE.steps * DEFAULT_SIZE.batch_size)
                / (r["steps"] * QUICK_SIZE.batch_size)
            )
            rest = (
                (r["total_seconds"] - r["train_seconds"])
                * (DEFAULT_SIZE.train + DEFAULT_SIZE.test)
                / (QUICK_SIZE.train + QUICK_SIZE.test)
            )
            times.append(train + rest)
    if not times:
        return None
    return statistics.fmean(times) * runs


if __name__ == "__main__":
    raise SystemExit(main())
