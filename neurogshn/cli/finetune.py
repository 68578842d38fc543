"""``neurogshn finetune``: train a VQA / VE / NLVR2 head on a pretrained GSHN."""

from __future__ import annotations

import argparse
from pathlib import Path

from neurogshn.cli.types import nonnegative_float, nonnegative_int, positive_float, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune a task head (VQA, visual entailment, NLVR2) on a pretrained GSHN",
        description=(
            "Fine-tune a task head (cross-attention from text tokens to node embeddings, soft "
            "counts and the checkpoint's ITM evidence, + MLP classifier) and, unless "
            "--backbone-lr 0, the backbone, on the task file "
            "annotations/{task}_{train-split}.json; validate on the --val-split after every "
            "epoch. The output directory (config.json + model.safetensors + "
            "task_head.safetensors + task.json, plus the resume state trainer.json + "
            "training_state.safetensors) is rewritten atomically after every epoch and is what "
            "`neurogshn evaluate --task TASK --checkpoint OUT` reads; OUT/resume/ holds the "
            "newest mid-epoch state (every --checkpoint-every steps). A killed run continues "
            "with the same command plus --resume, exactly as if it had not been interrupted "
            "(bit for bit on CPU with one thread); --resume with a larger --epochs extends a "
            "finished run. An existing non-empty OUT needs --resume or --overwrite."
        ),
    )
    parser.add_argument("--task", required=True, choices=["vqa", "ve", "nlvr2"], help="task")
    parser.add_argument(
        "--from",
        dest="from_checkpoint",
        required=True,
        type=Path,
        metavar="CHECKPOINT",
        help="pretrained checkpoint directory (config.json + model.safetensors)",
    )
    parser.add_argument("--data", required=True, type=Path, help="data set root (COCO layout)")
    parser.add_argument(
        "--out", type=Path, default=None, help="output (default runs/finetune_TASK)"
    )
    parser.add_argument("--train-split", default="train", help="training split (default train)")
    parser.add_argument(
        "--val-split", default="val", help="validation split ('' for none; default val)"
    )
    parser.add_argument("--epochs", type=positive_int, default=5, help="epochs (default 5)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="examples per step")
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="head learning rate")
    parser.add_argument(
        "--backbone-lr",
        type=nonnegative_float,
        default=None,
        help="backbone learning rate (0 freezes it; default 1e-4 for vqa and ve, 2e-5 for "
        "nlvr2, whose ITM evidence a faster rate erased)",
    )
    parser.add_argument(
        "--max-train", type=positive_int, default=None, help="use the first N examples"
    )
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="seed")
    parser.add_argument("--device", default=None, help="cpu, cuda … (default: auto)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="graph cache directory")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--strict", action="store_true", help="stop at the first bad record instead of skipping"
    )
    parser.add_argument(
        "--checkpoint-every",
        type=nonnegative_int,
        default=200,
        metavar="STEPS",
        help="write the resume state to OUT/resume every STEPS optimizer steps (default 200; "
        "0: only at the end of every epoch, which always writes one)",
    )
    parser.add_argument(
        "--head-fusion",
        choices=["blip", "cross"],
        default="cross",
        help="task head: 'cross' (tokens cross-attend to the nodes; default, measured better "
        "on VQA, docs/tasks.md) or 'blip' (token and node positions, self- and cross-attention)",
    )
    parser.add_argument(
        "--head-layers", type=positive_int, default=None, help="blocks of the task head (default 1)"
    )
    parser.add_argument(
        "--head-init",
        choices=["random", "itm"],
        default="random",
        help="'itm': the head's fusion encoder starts as a copy of the checkpoint's pretrained "
        "ITM head (implies --head-fusion blip and the ITM head's sizes); default random",
    )
    parser.add_argument(
        "--head-evidence",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="append the checkpoint's ITM evidence (match score, word PMI under masked LM) "
        "to the head's fused feature (default: when the checkpoint has an ITM head)",
    )
    parser.add_argument(
        "--head-counts",
        type=nonnegative_int,
        default=8,
        metavar="K",
        help="K soft-count readouts (sums of sigmoid node gates, binned) in the fused feature "
        "(default 8; 0: none)",
    )
    again = parser.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in OUT from its newest state (same settings; --epochs may grow)",
    )
    again.add_argument(
        "--overwrite",
        action="store_true",
        help="discard an earlier run's checkpoint and state in OUT and start over",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from neurogshn.tasks.finetune import run_finetune
    from neurogshn.tasks.metrics import format_metrics_table

    out = args.out or Path("runs") / f"finetune_{args.task}"
    result = run_finetune(
        task=args.task,
        checkpoint=args.from_checkpoint,
        data=args.data,
        out_dir=out,
        train_split=args.train_split,
        val_split=args.val_split or None,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        backbone_lr=args.backbone_lr,
        max_train=args.max_train,
        seed=args.seed,
        device=args.device,
        cache_dir=args.cache_dir,
        strict=args.strict,
        progress=not args.no_progress,
        resume=args.resume,
        overwrite=args.overwrite,
        checkpoint_every=args.checkpoint_every,
        head=_head_options(args),
    )
    for note in result["notes"]:
        print(f"note: {note}")
    if result.get("val"):
        print(format_metrics_table(result["val"], title=f"{args.task} [{args.val_split}]"))
    print(f"checkpoint: {out} ({result['seconds']:.1f} s)")
    return 0


def _head_options(args: argparse.Namespace) -> dict[str, object]:
    head: dict[str, object] = {"fusion": args.head_fusion}
    if args.head_init == "itm":
        head = {"fusion": "blip", "init": "itm"}
    if args.head_layers is not None:
        head["layers"] = args.head_layers
    head["evidence"] = "auto" if args.head_evidence is None else args.head_evidence
    head["count_heads"] = args.head_counts
    return head
