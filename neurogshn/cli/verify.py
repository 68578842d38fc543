"""``neurogshn verify``: Lava vs fixed-point reference, float vs quantized, downstream."""

from __future__ import annotations

import argparse

from neurogshn.cli.types import data_image_count, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "verify",
        help="verify a netx export in Lava's bit-accurate simulation and against the float model",
        description=(
            "(1) Lava Loihi2SimCfg(select_tag='fixed_pt') vs the NumPy fixed-point reference "
            "(must be identical; exit code 1 otherwise), (2) float Norse vs quantized spikes per "
            "layer, (3) retrieval with the quantized spiking branch (GSHN checkpoints). Prints a "
            "summary table (last line PASS/FAIL for check (1)); --json writes the full report."
        ),
    )
    p.add_argument("--export", required=True, help="directory written by `neurogshn export`")
    p.add_argument("--checkpoint", required=True, help="the checkpoint that was exported")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="data set root (real node inputs)")
    src.add_argument(
        "--random",
        type=positive_int,
        metavar="N",
        help="N random images of 8 nodes (smoke check only)",
    )
    p.add_argument("--split", default="test", help="split to verify on with --data (default: test)")
    p.add_argument(
        "--n", type=positive_int, default=None, help="images to verify on with --data (default 64)"
    )
    p.add_argument("--name", default=None, help="export name (when DIR holds several)")
    p.add_argument("--lava-nodes", type=positive_int, default=256, help="nodes run through Lava")
    p.add_argument("--no-lava", action="store_true", help="skip check (1)")
    p.add_argument("--no-downstream", action="store_true", help="skip check (3)")
    p.add_argument("--json", default=None, metavar="OUT", help="write the full report (JSON) here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    n_images = data_image_count(args)
    import time

    from neurogshn.hardware.export import load_export
    from neurogshn.hardware.source import load_spiking_branch
    from neurogshn.hardware.verify import (
        downstream_retrieval,
        format_verify_report,
        load_data_inputs,
        random_inputs,
        verify_export,
    )
    from neurogshn.utils.io import write_json_atomic

    start = time.perf_counter()
    export = load_export(args.export, args.name)
    branch = load_spiking_branch(args.checkpoint)
    graphs = None
    if args.data is not None:
        inputs, graphs, _ = load_data_inputs(
            branch, args.data, args.split, n_images, args.checkpoint, progress=True
        )
        source = f"{args.data} ({args.split}, {len(inputs)} images)"
    else:
        inputs = random_inputs(branch.encoder.in_features, args.random)
        source = f"random standard-normal inputs ({args.random} images x 8 nodes)"
    report = verify_export(
        branch, export, inputs, lava=not args.no_lava, lava_max_nodes=args.lava_nodes
    )
    report["inputs"] = source
    if graphs is not None and not args.no_downstream:
        report["downstream"] = downstream_retrieval(
            branch, export, args.data, args.split, graphs, max_images=n_images
        )
    report["seconds"] = time.perf_counter() - start
    if args.json:
        write_json_atomic(args.json, report)
        print(f"full report (JSON): {args.json}")
    print(format_verify_report(report))
    lava = report.get("lava_vs_reference")
    if lava is not None and lava["mismatching_entries"]:
        return 1
    return 0
