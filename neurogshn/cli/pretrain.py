"""``neurogshn pretrain``: STL pretraining of GSHN (the same code path as examples/pretrain_stl.py).

Single process::

    neurogshn pretrain --config configs/pretrain_default.json --set optim.lr=5e-4

Data parallel on CPU (gloo) or GPUs (nccl)::

    torchrun --nproc_per_node 2 -m neurogshn.cli pretrain --config configs/tiny.json
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence


def add_arguments(parser: argparse.ArgumentParser, default_config: str | None = None) -> None:
    """The pretraining options (shared with examples/pretrain_stl.py)."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=default_config,
        help="JSON TrainConfig (partial files keep the defaults for the rest; see "
        f"docs/training.md){' [default: %(default)s]' if default_config else ''}",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override one config value, e.g. --set optim.lr=3e-4 --set schedule.epochs=2 "
        "(repeatable; values parsed as JSON, checked against the field's type)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out (default: the newest run under the config's "
        "checkpoint.out_dir, runs/pretrain_stl unless set) from its newest checkpoint, exactly "
        "where it stopped",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="run directory (checkpoints, log.csv, final/, results.json); default: "
        "<checkpoint.out_dir>/<UTC timestamp>, i.e. runs/pretrain_stl/<UTC timestamp> unless "
        "the config sets it",
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1 … (default: the config's, 'auto')")
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="data set root (COCO panoptic layout); generated there when missing "
        "(default: the config's data.root)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pretrain",
        help="pretrain GSHN (ITC + spatio-temporal CL + STL + ITM) and evaluate retrieval",
        description=(
            "Pretrain a GSHN on image-caption scene graphs, evaluating retrieval and "
            "hard-negative accuracy before and after. Runs under torchrun for data parallelism."
        ),
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def load_config(args: argparse.Namespace):  # -> TrainConfig
    """Defaults ← ``--config`` ← ``--set`` ← ``--data``/``--device``."""
    from neurogshn.training.config import TrainConfig

    cfg = TrainConfig.from_json(args.config) if args.config else TrainConfig()
    overrides = list(args.overrides or [])
    if getattr(args, "data", None):
        overrides.append(f"data.root={args.data}")
    if getattr(args, "device", None):
        overrides.append(f"device={args.device}")
    return cfg.with_overrides(overrides) if overrides else cfg


def run(args: argparse.Namespace) -> int:
    from neurogshn.jobs.pretrain import (
        LATEST_LINK,
        resolve_run_dir,
        run_pretraining,
        summary_table,
    )
    from neurogshn.training.distributed import env_world_size

    t0 = time.perf_counter()
    cfg = load_config(args)
    out = args.out
    if out is None and env_world_size() > 1 and not args.resume:
        from neurogshn.errors import ConfigError

        raise ConfigError("under torchrun pass --out DIR (all ranks must agree on the run dir)")
    run_dir = resolve_run_dir(out, args.resume, cfg.checkpoint.out_dir)
    outcome = run_pretraining(cfg, run_dir, resume=args.resume, link_latest_run=out is None)
    if outcome.trained is not None:
        wall = time.perf_counter() - t0
        res = outcome.train
        print()
        print(f"== GSHN pretraining on {cfg.data.root} (eval split: {cfg.data.eval_split}) ==")
        print(summary_table(outcome.untrained, outcome.trained))
        print()
        print(
            f"steps: {res.steps} ({res.epochs_completed:.1f} epochs), "
            f"{res.graphs_per_s:.1f} graphs/s while training"
        )
        print(f"checkpoint: {outcome.final_dir}  (GSHN.from_pretrained)")
        latest = outcome.run_dir.parent / LATEST_LINK
        if latest.is_symlink() and latest.resolve() == outcome.run_dir.resolve():
            print(f"            {latest / 'final'}  (the same, via the newest-run link)")
        print(f"run dir:    {outcome.run_dir}  (log.csv, checkpoints/, results.json)")
        for note in outcome.skipped:
            print(f"note: {note}")
        timing = ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in outcome.timings.items())
        print(f"wall time:  {wall:.0f} s  ({timing})")
        sys.stdout.flush()
    return 0


def main(argv: Sequence[str] | None = None, default_config: str | None = None) -> int:
    """Run the pretraining job from ``argv`` (used by examples/pretrain_stl.py)."""
    from neurogshn.cli import main as cli_main

    argv = list(sys.argv[1:] if argv is None else argv)
    if default_config and "--config" not in argv:
        argv = ["--config", default_config, *argv]
    return cli_main(["pretrain", *argv])
