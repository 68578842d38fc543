"""``neurogshn data inspect``: draw one image, its panoptic overlay and its scene graph."""

from __future__ import annotations

import argparse
from pathlib import Path

from neurogshn.cli.data_graphs import add_graph_options, builder_config, parse_options
from neurogshn.cli.types import nonnegative_int, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="draw an image, its panoptic segmentation and its scene graph to a PNG",
        description=(
            "Segments image --index of --split, builds its scene graph and writes a figure: "
            "the image, the segments with their category labels, and the graph over the image "
            "(nodes at segment centroids, edges coloured by type)."
        ),
    )
    add_graph_options(parser)
    parser.add_argument("--split", default="test", help="split to show (default: test)")
    parser.add_argument(
        "--index", type=nonnegative_int, default=0, help="record index in the split"
    )
    parser.add_argument("--out", type=Path, required=True, help="output PNG")
    parser.add_argument("--dpi", type=positive_int, default=150, help="PNG resolution")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from neurogshn.data.coco import CocoPanopticDataset
    from neurogshn.errors import ConfigError
    from neurogshn.features.backbone import get_backbone
    from neurogshn.graph.builder import SceneGraphBuilder
    from neurogshn.graph.cache import dataset_category_names
    from neurogshn.graph.draw import inspect_figure
    from neurogshn.segmentation import get_segmenter, segment_record

    ds = CocoPanopticDataset(args.data, args.split, strict=args.strict)
    if not 0 <= args.index < len(ds):
        raise ConfigError(
            f"--index {args.index} is out of range: split {args.split!r} has {len(ds)} images"
        )
    record = ds[args.index]
    opts = parse_options(args.segmenter_opt)
    segmenter = get_segmenter(args.segmenter, **opts)
    seg = segment_record(segmenter, record)
    builder = SceneGraphBuilder(
        get_backbone(args.backbone, args.device), dataset_category_names(ds), builder_config(args)
    )
    graph = builder(record.image, seg, int(record.image_id))
    title = (
        f"{Path(str(record.file_name)).name} (image_id {record.image_id}, split {args.split}, "
        f"segmenter {args.segmenter}, nodes {args.nodes})"
    )
    captions = list(getattr(record, "captions", []) or [])
    fig = inspect_figure(
        record.image,
        seg,
        graph,
        builder.layout,
        title=title,
        caption=captions[0] if captions else None,
        boxes=args.nodes == "boxes",
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=args.dpi, bbox_inches="tight")
    print(
        f"wrote {args.out}: {graph.num_nodes - 1} nodes + global, "
        f"{graph.edge_index.shape[1]} directed edges"
    )
    return 0
