"""``neurogshn raster``: draw how a trained GSHN's spiking branch fires on one image.

Loads the checkpoint, segments the image (SLIC superpixels for ``--image``; ground truth or
superpixels for a data set record), builds its scene graph with the same feature layout as the
checkpoint, encodes it once and writes one PNG: the image with segments coloured by firing
rate, the raster of the chosen layer, and the rate histogram of every layer.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from neurogshn.cli.types import nonnegative_int, positive_int

#: Longest image side used for ``--image`` (larger photos are downscaled first).
MAX_IMAGE_SIDE = 512


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "raster",
        help="plot spike rasters and segment firing rates of a checkpoint on one image",
        description=(
            "Encode one image with a GSHN checkpoint and write a PNG: the image with segments "
            "coloured by firing rate, the spike raster of one layer (time step × neuron), and "
            "the firing-rate histogram of every spiking layer."
        ),
    )
    parser.add_argument("--checkpoint", required=True, help="GSHN checkpoint directory")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="an RGB image file (segmented with SLIC superpixels)")
    src.add_argument("--data", help="a data set root (COCO panoptic layout)")
    parser.add_argument("--split", default="test", help="split to read (default: test)")
    parser.add_argument(
        "--index",
        type=nonnegative_int,
        default=0,
        help="record index within the split (default: 0)",
    )
    parser.add_argument("--out", required=True, help="output PNG path")
    parser.add_argument(
        "--layer",
        type=nonnegative_int,
        default=None,
        help="spiking layer to draw, 0 = layer0, the first (default: the last layer)",
    )
    parser.add_argument(
        "--node",
        type=nonnegative_int,
        default=None,
        help="draw only this graph node's raster (0 = global node; default: all nodes)",
    )
    parser.add_argument(
        "--segmenter",
        choices=("superpixel", "gt"),
        default=None,
        help="segments for --data: ground truth (default) or SLIC superpixels; --image "
        "always uses superpixels",
    )
    parser.add_argument(
        "--superpixels",
        type=positive_int,
        default=32,
        help="approximate SLIC segment count (default 32)",
    )
    parser.add_argument(
        "--backbone", default="efficientnet_lite0", help="feature backbone of the graphs"
    )
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when available)"
    )
    parser.add_argument(
        "--dpi", type=positive_int, default=110, help="PNG resolution (default 110)"
    )
    parser.set_defaults(func=run)


def load_image(path: str | Path, max_side: int = MAX_IMAGE_SIDE) -> Any:
    """Read an image file as ``H×W×3`` uint8 RGB, downscaled so its longest side ≤ max_side."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from neurogshn.errors import InputFileError

    p = Path(path)
    if not p.is_file():
        raise InputFileError(p, "image file not found")
    try:
        with Image.open(p) as im:
            im = im.convert("RGB")
            scale = max_side / max(im.size)
            if scale < 1:
                size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
                im = im.resize(size, Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError) as exc:
        raise InputFileError(p, f"not a readable image ({exc})") from None


def _node_features(config: Any) -> int | None:
    for name in ("node_features", "in_features", "node_dim"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


def checkpoint_categories(
    config: Any, visual_dim: int, dataset_categories: list[str] | None
) -> tuple[str, ...]:
    """The category vocabulary that reproduces the checkpoint's node-feature width.

    The one-hot block has ``V + 1`` slots (``V`` names + "unknown"), so the width fixes ``V``.
    Names come from the checkpoint config (``categories`` / ``feature_layout``) when it has
    them, else from the data set; superpixels map every segment to "unknown", so for
    ``--image`` placeholder names of the right count give exactly the trained layout.
    """
    from neurogshn.features.segment import COLOR_COLUMNS, FLAG_COLUMNS, GEOMETRY_COLUMNS

    for name in ("categories", "feature_layout"):
        value = getattr(config, name, None)
        if isinstance(value, dict):
            value = value.get("categories")
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return tuple(value)
    width = _node_features(config)
    fixed = visual_dim + len(GEOMETRY_COLUMNS) + len(COLOR_COLUMNS) + 1 + len(FLAG_COLUMNS)
    if width is None:
        return tuple(dataset_categories or ())
    count = width - fixed
    if count < 0:
        from neurogshn.errors import ConfigError

        raise ConfigError(
            f"checkpoint expects {width} node features, fewer than the {fixed} that the "
            "backbone, geometry, colour and flag columns alone need: pick its --backbone"
        )
    if dataset_categories is not None and len(dataset_categories) == count:
        return tuple(dataset_categories)
    return tuple(f"category_{i}" for i in range(count))


def make_raster_figure(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """Everything ``neurogshn raster`` does except writing the PNG.

    Returns:
        ``(figure, info)`` with ``info``: ``spikes`` (per layer ``T×N×D`` CPU tensors of the
        image's graph), ``graph`` (the PyG ``Data``), ``segmentation``, ``image``, ``layer``
        (1-based) and ``name``.
    """
    import numpy as np
    import torch
    from torch_geometric.data import Batch

    from neurogshn.errors import CheckpointError, ConfigError
    from neurogshn.features.backbone import get_backbone
    from neurogshn.graph import SceneGraphBuilder
    from neurogshn.model import GSHN
    from neurogshn.segmentation import get_segmenter
    from neurogshn.utils.runtime import resolve_device
    from neurogshn.viz import plot_image_summary

    device = resolve_device(args.device)
    ckpt = Path(args.checkpoint)
    model = GSHN.from_pretrained(ckpt, device=device)
    model.eval()
    superpixel = get_segmenter("superpixel", n_segments=args.superpixels)
    dataset_categories: list[str] | None = None
    if args.image is not None:
        if args.segmenter == "gt":
            raise ConfigError("--segmenter gt needs --data (an image file has no annotations)")
        image = load_image(args.image)
        segmentation = superpixel(image)
        image_id, name = -1, Path(args.image).name
    else:
        from neurogshn.data.coco import CocoPanopticDataset

        ds = CocoPanopticDataset(args.data, args.split)
        if not 0 <= args.index < len(ds):
            raise ConfigError(
                f"--index {args.index} out of range: {args.data} split {args.split!r} has "
                f"{len(ds)} images"
            )
        record = ds[args.index]
        image = record.image
        segmentation = superpixel(image) if args.segmenter == "superpixel" else record.segmentation
        image_id, name = int(record.image_id), f"{record.file_name} (id {record.image_id})"
        dataset_categories = [str(ds.categories[k]["name"]) for k in sorted(ds.categories)]
    backbone = get_backbone(args.backbone, device=device)
    categories = checkpoint_categories(model.config, backbone.feature_dim, dataset_categories)
    graph = SceneGraphBuilder(backbone, categories)(image, segmentation, image_id)
    expected = _node_features(model.config)
    if expected is not None and graph.x.shape[1] != expected:
        raise CheckpointError(
            ckpt / "config.json",
            f"expects {expected} node features but the graph of this image has "
            f"{graph.x.shape[1]} (backbone {args.backbone!r}, {len(categories)} categories)",
        )
    with torch.no_grad():
        encoding = model.encode_image(Batch.from_data_list([graph]).to(device))
    spikes = [s.detach().cpu() for s in encoding.spikes]
    if not spikes:
        raise ConfigError(
            f"{ckpt}: mode {getattr(model.config, 'mode', '?')!r} has no spiking branch to plot"
        )
    num_layers = len(spikes)
    layer = num_layers - 1 if args.layer is None else args.layer
    if not 0 <= layer < num_layers:
        raise ConfigError(
            f"--layer {args.layer} out of range: the model has {num_layers} spiking layers "
            f"(0 … {num_layers - 1})"
        )
    n = graph.num_nodes
    if args.node is not None and not 0 <= args.node < n:
        raise ConfigError(f"--node {args.node} out of range: this graph has {n} nodes")
    segment_ids = graph.segment_id[1:].tolist()
    category = {seg.id: seg.category for seg in segmentation.segments}
    names = ["0: global"] + [
        f"{k}: {category.get(sid) or 'segment'}" for k, sid in enumerate(segment_ids, start=1)
    ]
    fig = plot_image_summary(
        image,
        np.asarray(segmentation.segment_map),
        segment_ids,
        spikes,
        layer=layer,
        node=args.node,
        image_name=name,
        node_names=names,
    )
    info = {
        "spikes": spikes,
        "graph": graph,
        "segmentation": segmentation,
        "image": image,
        "layer": layer,
        "name": name,
    }
    return fig, info


def run(args: argparse.Namespace) -> int:
    from neurogshn.utils.names import layer_name
    from neurogshn.viz import save_figure

    fig, info = make_raster_figure(args)
    save_figure(fig, args.out, dpi=args.dpi)
    spikes, n = info["spikes"], info["graph"].num_nodes
    rates = [float(s.mean()) for s in spikes]
    print(
        f"wrote {args.out}: {n} nodes ({n - 1} segments), {spikes[0].shape[0]} time steps, "
        "mean rate "
        + ", ".join(f"{layer_name(i)} {r:.3f}" for i, r in enumerate(rates))
        + " spikes/step"
    )
    return 0
