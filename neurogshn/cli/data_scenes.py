"""``neurogshn data scenes``: generate the relational-scenes benchmark (docs/data.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from neurogshn.cli.types import nonnegative_int, positive_int


def register(actions: argparse._SubParsersAction) -> None:
    """Add the ``scenes`` action to ``neurogshn data``."""
    from neurogshn.data.relational.scenes import DEFAULT_NLVR2_TRAIN_PAIRS
    from neurogshn.data.relational.vocabulary import SHAPES, STUFF

    parser = actions.add_parser(
        "scenes",
        help="generate the relational-scenes benchmark (COCO panoptic + captions + task files)",
        description=(
            "Generate deterministic relational scenes: 1-2 stuff regions ("
            + ", ".join(STUFF)
            + ") and 2-6 things ("
            + ", ".join(SHAPES)
            + ") with exact panoptic masks, 5 verified captions per image, ARO-style hard "
            "negatives and VQA / visual-entailment / NLVR2-style task files, in the official "
            "COCO formats. The same seed and sizes give byte-identical files; each split has "
            "its own random streams, so changing --train leaves val and test unchanged. "
            "With held-out phrasings (the default) val and test are worded by phrasing "
            "families the training split never uses, and a test_seen split holds the test "
            "scenes worded like the training split. "
            "(--strict does not apply: this command writes data, it does not read any.)"
        ),
    )
    parser.add_argument("--out", required=True, type=Path, help="output data set root")
    parser.add_argument(
        "--seed", type=nonnegative_int, default=0, help="benchmark seed (default 0)"
    )
    parser.add_argument(
        "--train", type=positive_int, default=2000, help="train images (default 2000)"
    )
    parser.add_argument("--val", type=nonnegative_int, default=200, help="val images (default 200)")
    parser.add_argument(
        "--test", type=nonnegative_int, default=1000, help="test images (default 1000)"
    )
    parser.add_argument(
        "--image-size",
        type=positive_int,
        default=128,
        help="image side in pixels (default 128, >= 32)",
    )
    parser.add_argument(
        "--nlvr2-pairs",
        type=nonnegative_int,
        default=DEFAULT_NLVR2_TRAIN_PAIRS,
        metavar="N",
        help=(
            "NLVR2-style pairs per training image, each with another random right image "
            f"(default {DEFAULT_NLVR2_TRAIN_PAIRS}; val and test: one per image)"
        ),
    )
    parser.add_argument(
        "--heldout-phrasings",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=(
            "word val and test with phrasing families of their own and add the test_seen "
            "split (default: on; --no-heldout-phrasings words every split like train)"
        ),
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a non-empty --out directory, replacing files of the same names",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import time

    from neurogshn.data.relational.scenes import generate_scenes

    splits = {"train": args.train, "val": args.val, "test": args.test}
    t0 = time.perf_counter()
    root = generate_scenes(
        args.out,
        seed=args.seed,
        splits=splits,
        image_size=args.image_size,
        progress=not args.no_progress,
        nlvr2_train_pairs=args.nlvr2_pairs,
        heldout_phrasings=args.heldout_phrasings,
        overwrite=args.overwrite,
    )
    dt = time.perf_counter() - t0
    manifest = json.loads((root / "annotations" / "scenes.json").read_text())
    splits = {str(k): int(v) for k, v in manifest["splits"].items()}
    n = sum(splits.values())
    print(
        f"wrote {n} images ({', '.join(f'{k} {v}' for k, v in splits.items())}) at "
        f"{args.image_size} px to {root} in {dt:.1f} s ({n / max(dt, 1e-9):.0f} images/s)"
    )
    families = manifest.get("phrasing_families", {})
    sources = manifest.get("scene_source", {})
    for split in splits:
        note = f" (the scenes of {sources[split]})" if split in sources else ""
        print(f"  {split}: phrasing families {', '.join(families.get(split, []))}{note}")
    counts = {}
    for split in splits:
        for task in ("vqa", "ve", "nlvr2"):
            path = root / "annotations" / f"{task}_{split}.json"
            data = json.loads(path.read_text())
            counts[f"{task}_{split}"] = len(data.get("questions", data.get("items", [])))
    print("task items: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0
