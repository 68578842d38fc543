"""Where the default pretraining job's seconds go, measured phase by phase in one process.

The job (``neurogshn pretrain``, ``make pretrain``) runs: scene generation (fresh machine only),
graph building (segment → backbone → scene graph, cached), loading the cached graphs, building
the model (text model load) and fitting its token statistics, an evaluation of the untrained
model, the training steps with periodic checkpoints, and an evaluation of the trained model.
This script times each phase with the job's own functions on the job's configuration:

* generation and cold graph building on a fresh sample of ``--sample-images`` images, per image,
  scaled to the job's image counts (labelled *scaled*);
* ``--steps`` training steps timed without the profiler (wall time per step, scaled to the
  job's step count), then the same number again under ``torch.profiler``, whose
  ``record_function`` labels (trainer: ``train/*``; objective: ``model/encode_image``,
  ``model/encode_text``, ``loss/<name>``) split a step into its parts (shares of the profiled
  step applied to the unprofiled wall time);
* one evaluation on ``--eval-images`` images of the eval split (all by default), counted
  twice when the config evaluates the untrained model too;
* one checkpoint write, times the number the job writes.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/profile_pretrain.py \
        [--config configs/pretrain_default.json] [--steps 12] [--json profile.json]

Figures are from this machine and this run; times of phases that ran on a sample are scaled
linearly and say so.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]

#: record_function labels of one training step, in the order they run; nested labels are
#: indented (their time is part of the enclosing label's).
STEP_LABELS = [
    ("train/batch", 0),
    ("train/forward", 0),
    ("model/encode_image", 1),
    ("model/encode_text", 1),
    ("loss/itc", 1),
    ("loss/cl", 1),
    ("loss/stl", 1),
    ("loss/itm", 1),
    ("loss/itm_mlm", 1),
    ("train/backward", 0),
    ("train/optimizer", 0),
]


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def profile(args: argparse.Namespace) -> dict[str, Any]:
    from neurogshn.data.benchmarks import DEFAULT_BENCHMARK, generate
    from neurogshn.graph.cache import load_graph_dataset
    from neurogshn.jobs.pretrain import (
        build_model,
        ensure_scenes,
        evaluate,
        hard_negatives_path,
        load_captions,
        load_split,
        prepare_objective,
        set_determinism,
    )
    from neurogshn.training.config import TrainConfig
    from neurogshn.training.data import PretrainingData, PretrainItemSource, load_hard_negatives
    from neurogshn.training.distributed import DistInfo
    from neurogshn.training.trainer import Trainer
    from neurogshn.utils.runtime import seed_everything

    cfg = TrainConfig.from_json(args.config).with_overrides(
        ["log.progress=false", 'device="cpu"', *args.set]
    )
    if args.eval_images is not None:
        cfg = cfg.with_overrides([f"data.max_eval_images={args.eval_images}"])
    info = DistInfo()
    device = torch.device("cpu")
    set_determinism(cfg)
    phases: list[dict[str, Any]] = []

    def add(name: str, seconds: float, how: str) -> None:
        phases.append({"phase": name, "seconds": seconds, "how": how})

    g = cfg.data.generate
    job_images = {"train": g.train, "val": g.val, "test": g.test}
    graph_images = job_images[cfg.data.train_split] + (
        job_images.get(cfg.data.eval_split, 0) if cfg.eval.enabled else 0
    )
    with tempfile.TemporaryDirectory() as tmp:
        n = args.sample_images
        sample = Path(tmp) / "scenes"
        _, t_gen = _timed(
            generate,
            DEFAULT_BENCHMARK,
            sample,
            seed=g.seed + 1,
            splits={"train": n},
            image_size=g.image_size,
            heldout_phrasings=g.heldout_phrasings,
        )
        _, t_graph = _timed(
            load_graph_dataset,
            sample,
            "train",
            segmenter=cfg.graph.segmenter,
            backbone=cfg.graph.backbone,
            nodes=cfg.graph.nodes,
            edges=cfg.graph.edges,
            progress=False,
            device=device,
        )
    n_all = sum(job_images.values())
    add(
        "generate scenes (fresh machine only)",
        t_gen / n * n_all,
        f"scaled: {t_gen / n * 1000:.1f} ms/image x {n_all} images",
    )
    add(
        "build graphs, cold (fresh machine only)",
        t_graph / n * graph_images,
        f"scaled: {t_graph / n * 1000:.1f} ms/image x {graph_images} images",
    )

    root = ensure_scenes(cfg, info, print)
    t0 = time.perf_counter()
    train_graphs = load_split(cfg, root, cfg.data.train_split, info, device)
    eval_graphs = load_split(cfg, root, cfg.data.eval_split, info, device)
    add("load cached graphs", time.perf_counter() - t0, "measured")

    t0 = time.perf_counter()
    train_coco = load_captions(cfg, root, cfg.data.train_split)
    hard_negs = load_hard_negatives(
        hard_negatives_path(root, cfg.data.train_split), train_coco.captions
    )
    source = PretrainItemSource(train_graphs, train_coco.captions, hard_negs)
    data = PretrainingData(
        source,
        batch_size=cfg.schedule.batch_size,
        seed=cfg.seed,
        kinds=cfg.data.hard_negative_kinds,
        max_images=cfg.data.max_train_images,
    )
    add("load captions and hard negatives", time.perf_counter() - t0, "measured")

    seed_everything(cfg.seed)
    t0 = time.perf_counter()
    model = build_model(cfg, train_graphs).to(device)
    add("build model (text model load)", time.perf_counter() - t0, "measured")
    objective, t_prep = _timed(prepare_objective, model, source, train_coco)
    add("token statistics and groundings", t_prep, "measured")

    eval_seconds, eval_how = 0.0, ""
    if cfg.eval.enabled:
        eval_coco = load_captions(cfg, root, cfg.data.eval_split)
        _, eval_seconds = _timed(evaluate, cfg, model, eval_graphs, eval_coco, root, device)
        n_eval = len(eval_graphs)
        if args.eval_images is not None:
            n_eval = min(args.eval_images, n_eval)
        eval_seconds *= len(eval_graphs) / n_eval
        eval_how = (
            "measured"
            if n_eval == len(eval_graphs)
            else f"scaled: {n_eval} of {len(eval_graphs)} images"
        )
        if cfg.eval.untrained:
            add("evaluate the untrained model", eval_seconds, eval_how)

    seed_everything(cfg.seed)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(model, objective, data, cfg, run_dir, device, info)
        total_steps = trainer.total_steps
        trainer.fit(stop_after=args.warmup)
        _, t_steps = _timed(trainer.fit, stop_after=args.steps)
        per_step = t_steps / args.steps
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            trainer.fit(stop_after=args.steps)
        _, t_ckpt = _timed(trainer.save_checkpoint)
    totals = {e.key: e.cpu_time_total / 1e6 / args.steps for e in prof.key_averages()}
    top = [lab for lab, depth in STEP_LABELS if depth == 0]
    profiled_step = sum(totals.get(lab, 0.0) for lab in top)
    step_parts = []
    for lab, depth in STEP_LABELS:
        if lab in totals:
            share = totals[lab] / profiled_step
            step_parts.append(
                {"label": lab, "depth": depth, "share": share, "seconds_per_step": share * per_step}
            )
    add(
        f"training: {total_steps} steps",
        per_step * total_steps,
        f"scaled: {per_step:.2f} s/step (mean of {args.steps}) x {total_steps}",
    )
    every = cfg.checkpoint.every_steps
    n_ckpt = (total_steps - 1) // every + 1 if every > 0 else 1
    add("checkpoints", t_ckpt * n_ckpt, f"scaled: {t_ckpt:.2f} s x {n_ckpt}")
    if cfg.eval.enabled:
        add("evaluate the trained model", eval_seconds, f"{eval_how} (untrained weights)")
    return {
        "config": str(args.config),
        "overrides": args.set,
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "torch": torch.__version__,
        "phases": phases,
        "step": {"seconds": per_step, "profiled_seconds": profiled_step, "parts": step_parts},
        "job_seconds_fresh": sum(p["seconds"] for p in phases),
        "job_seconds_cached": sum(
            p["seconds"] for p in phases if "fresh machine only" not in p["phase"]
        ),
    }


def format_report(r: dict[str, Any]) -> str:
    lines = [
        f"profile of {r['config']} ({r['threads']} threads, {r['machine']}, torch {r['torch']})",
        "",
        f"{'phase':44s} {'seconds':>9s} {'share':>7s}  how",
    ]
    total = r["job_seconds_fresh"]
    for p in r["phases"]:
        lines.append(
            f"{p['phase']:44s} {p['seconds']:9.1f} {100 * p['seconds'] / total:6.1f}%  {p['how']}"
        )
    lines.append(f"{'total, fresh machine':44s} {total:9.1f}")
    lines.append(f"{'total, data and graphs cached':44s} {r['job_seconds_cached']:9.1f}")
    lines += [
        "",
        f"one training step: {r['step']['seconds']:.3f} s "
        f"(profiled: {r['step']['profiled_seconds']:.3f} s)",
        "",
    ]
    lines.append(f"{'part of the step':30s} {'s/step':>8s} {'share':>7s}")
    for part in r["step"]["parts"]:
        name = "  " * part["depth"] + part["label"]
        lines.append(f"{name:30s} {part['seconds_per_step']:8.3f} {100 * part['share']:6.1f}%")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "pretrain_default.json")
    parser.add_argument("--set", action="append", default=[], help="config override (repeat)")
    parser.add_argument("--steps", type=int, default=12, help="timed (and profiled) steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument(
        "--sample-images",
        type=int,
        default=40,
        help="images generated and built cold to time those phases",
    )
    parser.add_argument(
        "--eval-images",
        type=int,
        default=None,
        help="evaluate on this many images and scale (default: the whole split)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.sample_images < 1 or args.warmup < 0:
        parser.error("--steps and --sample-images must be >= 1, --warmup >= 0")
    report = profile(args)
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if not math.isfinite(report["job_seconds_fresh"]):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
