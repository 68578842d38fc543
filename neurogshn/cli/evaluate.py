"""``neurogshn evaluate``: retrieval / VQA / VE / NLVR2 figures of a checkpoint on a data split."""

from __future__ import annotations

import argparse
from pathlib import Path

from neurogshn.cli.types import nonnegative_float, nonnegative_int, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a checkpoint: retrieval (zero-shot or fine-tuned), VQA, VE, NLVR2",
        description=(
            "Evaluate a checkpoint on one task and split, print a table and optionally write "
            "JSON. Retrieval works on any COCO-format captions + panoptic data set (real COCO "
            "2017 or generated); its hard-negative diagnostics (<kind>_acc for every kind of "
            "negative the file has) need annotations/hard_negatives_{split}.json and are "
            "omitted, with a note, when it is absent. A data set whose annotations/scenes.json "
            "declares a known benchmark also gets its truth-oracle figures (*_oracle, "
            "*_true@1). Metric names carry direction and K (t2i_R@1)."
        ),
    )
    parser.add_argument(
        "--task", required=True, choices=["retrieval", "vqa", "ve", "nlvr2"], help="task"
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        type=Path,
        help="checkpoint directory (pretrained for retrieval; from `neurogshn finetune` else)",
    )
    parser.add_argument("--data", required=True, type=Path, help="data set root (COCO layout)")
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="write JSON here")
    parser.add_argument(
        "--hard-negatives",
        type=Path,
        default=None,
        metavar="FILE",
        help="retrieval: hard-negatives file (default: annotations/hard_negatives_{split}.json "
        "when present)",
    )
    parser.add_argument(
        "--no-hard-negatives", action="store_true", help="retrieval: skip the diagnostics"
    )
    parser.add_argument(
        "--max-images", type=positive_int, default=None, help="retrieval: only the first N images"
    )
    parser.add_argument(
        "--rerank",
        type=nonnegative_int,
        default=None,
        metavar="K",
        help="retrieval: re-rank each query's K best ITC candidates with the ITM head "
        "(ALBEF/BLIP protocol; default 16 when the checkpoint has an ITM head; 0: ITC only). "
        "The ITC-only figures are kept as *_itc",
    )
    parser.add_argument(
        "--pool-norm",
        type=nonnegative_float,
        default=0.0,
        metavar="BETA",
        help="retrieval: also report image->text R@K with each caption's score lowered by "
        "BETA x log(0.5 + number of evaluated images it matches by ITM), as *_poolnorm "
        "(transductive: uses the other test images; 2 was chosen on a validation pool; "
        "default 0: off; needs re-ranking)",
    )
    parser.add_argument(
        "--itc-weight",
        type=nonnegative_float,
        default=None,
        metavar="W",
        help="retrieval: weight of the ITC logit in the fused score ITM + W x ITC logit that "
        "re-ranking, --pool-norm and the hard-negative diagnostics use (default 0.5, chosen on "
        "the validation split)",
    )
    parser.add_argument(
        "--no-oracle",
        action="store_true",
        help="retrieval: skip what the captions allow (the recall of a perfect reader of the "
        "captions, *_oracle, and *_true@1), computed by default when the data set declares "
        "a benchmark with a truth oracle in annotations/scenes.json",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=64, help="graphs per forward pass"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: auto)")
    parser.add_argument(
        "--nodes",
        default=None,
        choices=["panoptic", "patches", "boxes"],
        help="override the checkpoint's node set",
    )
    parser.add_argument(
        "--edges", default=None, choices=["full", "none"], help="override the checkpoint's edges"
    )
    parser.add_argument(
        "--segmenter", default=None, help="override the checkpoint's segmenter (gt, superpixel …)"
    )
    parser.add_argument("--cache-dir", type=Path, default=None, help="graph cache directory")
    parser.add_argument(
        "--score-weight",
        type=nonnegative_float,
        default=None,
        metavar="L",
        help="retrieval: weight of the masked-LM word evidence in the ITM score "
        "(itm_mlm_score_weight; default: the checkpoint's)",
    )
    parser.add_argument(
        "--rerank-word-evidence",
        action="store_true",
        help="retrieval: re-rank with the masked-LM word evidence in the ITM score too (one "
        "cross-encoder pass per scored word of every pair: slow on a CPU)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--strict", action="store_true", help="stop at the first bad record instead of skipping"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from neurogshn.tasks.evaluate import evaluate_checkpoint
    from neurogshn.tasks.metrics import format_metrics_table
    from neurogshn.utils.io import write_json_atomic

    hn: object = True
    if args.no_hard_negatives:
        hn = False
    elif args.hard_negatives is not None:
        hn = args.hard_negatives
    result = evaluate_checkpoint(
        args.task,
        args.checkpoint,
        args.data,
        args.split,
        batch_size=args.batch_size,
        device=args.device,
        strict=args.strict,
        hard_negatives=hn,
        graph_overrides={"nodes": args.nodes, "edges": args.edges, "segmenter": args.segmenter},
        cache_dir=args.cache_dir,
        max_images=args.max_images,
        progress=not args.no_progress,
        rerank=args.rerank,
        oracle=not args.no_oracle,
        pool_norm=args.pool_norm,
        itc_weight=args.itc_weight,
        score_weight=args.score_weight,
        rerank_word_evidence=args.rerank_word_evidence,
    )
    title = f"{args.task} on {args.data} [{args.split}] — {args.checkpoint}"
    print(format_metrics_table(result.metrics, title=title))
    for note in result.notes:
        print(f"note: {note}")
    print(f"({result.seconds:.1f} s)")
    if args.json is not None:
        write_json_atomic(args.json, result.to_dict())
        print(f"wrote {args.json}")
    return 0
