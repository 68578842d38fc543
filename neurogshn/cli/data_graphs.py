"""``neurogshn data graphs``: build (or verify) the scene-graph cache of a data set."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from neurogshn.cli.types import nonnegative_int, positive_int


def parse_options(items: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; values parsed as JSON when they parse (numbers, lists, true)."""
    from neurogshn.errors import ConfigError

    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--segmenter-opt expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def add_graph_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``data graphs`` and ``data inspect``."""
    parser.add_argument("--data", required=True, type=Path, help="data set root (COCO layout)")
    parser.add_argument(
        "--segmenter",
        default="gt",
        choices=["gt", "superpixel", "transformers"],
        help="segmenter (default: gt = the data set's annotations)",
    )
    parser.add_argument(
        "--segmenter-opt",
        action="append",
        metavar="KEY=VALUE",
        help="segmenter option, repeatable (e.g. model_dir=DIR threshold=0.3 n_segments=32)",
    )
    parser.add_argument("--backbone", default="efficientnet_lite0", help="feature backbone")
    parser.add_argument(
        "--nodes",
        default="panoptic",
        choices=["panoptic", "patches", "boxes"],
        help="node set: panoptic segments, a P×P patch grid, or segment bounding boxes",
    )
    parser.add_argument(
        "--edges",
        default="full",
        choices=["full", "none"],
        help="full = adjacency + kNN + global edges; none = no edges (bag of regions)",
    )
    parser.add_argument("--knn-k", type=nonnegative_int, default=4, help="kNN neighbours per node")
    parser.add_argument("--patch-grid", type=positive_int, default=8, help="P for --nodes patches")
    parser.add_argument("--device", default=None, help="backbone device (default: auto)")
    parser.add_argument(
        "--strict", action="store_true", help="stop at the first bad record instead of skipping"
    )


def builder_config(args: argparse.Namespace) -> Any:
    from neurogshn.graph.builder import GraphBuilderConfig

    return GraphBuilderConfig(
        nodes=args.nodes, edges=args.edges, knn_k=args.knn_k, patch_grid=args.patch_grid
    )


def find_splits(root: Path) -> list[str]:
    """Splits with a panoptic annotation file (``panoptic_{split}.json`` or ``…2017.json``)."""
    names = []
    for p in sorted((root / "annotations").glob("panoptic_*.json")):
        name = p.stem[len("panoptic_") :]
        names.append(name[:-4] if name.endswith("2017") else name)
    return names


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "graphs",
        help="build the scene-graph cache (segments -> features -> PyG graphs)",
        description=(
            "Segment every image, pool backbone features per segment and build one scene graph "
            "per image; cache them under <data>/.neurogshn_cache (or --cache-dir). A valid "
            "cache is reused; any change of data, segmenter, backbone, nodes or edges rebuilds."
        ),
    )
    add_graph_options(parser)
    parser.add_argument("--split", default="all", help="split name, or 'all' (default)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="cache directory")
    parser.add_argument(
        "--batch-size", type=positive_int, default=32, help="images per backbone pass"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from neurogshn.errors import DataError
    from neurogshn.graph.cache import build_graph_cache

    root: Path = args.data
    if not root.is_dir():
        raise DataError(root, "data set root does not exist")
    splits = find_splits(root) if args.split == "all" else [args.split]
    if not splits:
        raise DataError(root / "annotations", "no panoptic_{split}.json annotation file found")
    opts = parse_options(args.segmenter_opt)
    if args.segmenter == "transformers" and args.device is not None:
        opts.setdefault("device", args.device)
    cfg = builder_config(args)
    total_skipped = 0
    for split in splits:
        res = build_graph_cache(
            root,
            split,
            segmenter=args.segmenter,
            segmenter_kwargs=opts,
            backbone=args.backbone,
            nodes=args.nodes,
            edges=args.edges,
            builder_config=cfg,
            cache_dir=args.cache_dir,
            strict=args.strict,
            progress=not args.no_progress,
            device=args.device,
            batch_size=args.batch_size,
            force=args.force,
        )
        ds, st = res.dataset, res.dataset.stats()
        size = sum(f.stat().st_size for f in res.path.iterdir()) / 2**20
        how = "built" if res.built else "from cache"
        rate = len(ds) / res.seconds if res.seconds > 0 else float("inf")
        print(f"[{split}] {len(ds)} graphs {how} in {res.seconds:.1f} s ({rate:.0f} img/s)")
        if len(ds):
            print(
                f"  nodes/graph {st['nodes_mean']:.1f} (min {st['nodes_min']:.0f}, max "
                f"{st['nodes_max']:.0f}), edges/graph {st['edges_mean']:.1f} (min "
                f"{st['edges_min']:.0f}, max {st['edges_max']:.0f})"
            )
        print(f"  node features {ds.feature_dim}, edge features {ds.edge_dim}")
        print(f"  cache {res.path} ({size:.1f} MiB)")
        print(f"  skipped {len(ds.skipped)}")
        for s in ds.skipped[:20]:
            print(f"    {s['path']}: {s['reason']}")
        if len(ds.skipped) > 20:
            print(f"    … and {len(ds.skipped) - 20} more (listed in {res.path / 'index.json'})")
        total_skipped += len(ds.skipped)
        if not len(ds):
            why = "every record was skipped (above)" if ds.skipped else "it lists no image"
            raise DataError(
                root / "annotations" / f"panoptic_{split}.json", f"no graph built: {why}"
            )
    return 0
