"""``neurogshn energy``: firing rates, operation counts and energy estimates per image."""

from __future__ import annotations

import argparse

from neurogshn.cli.types import data_image_count, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "energy",
        help="spike rates, synaptic ops and energy ESTIMATES (Loihi 1, 45 nm CMOS SNN/ANN, GAT)",
        description=(
            "Runs the quantized spiking branch (fixed-point reference) on node inputs and "
            "estimates energy per image from the constants in hardware/profiles/*.json (each "
            "cites its source). Every figure is an estimate, not a measurement. Prints a summary "
            "table; --json writes the full report."
        ),
    )
    p.add_argument("--checkpoint", required=True, help="GSHN or spiking-encoder checkpoint dir")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="data set root")
    src.add_argument(
        "--random", type=positive_int, metavar="N", help="N random images (smoke check)"
    )
    p.add_argument("--split", default="test", help="split to measure with --data (default: test)")
    p.add_argument("--n", type=positive_int, default=None, help="images with --data (default 64)")
    p.add_argument(
        "--hardware",
        choices=("all", "loihi1", "cmos45nm"),
        default="all",
        help="spiking-branch target(s) to report (the ANN and GAT use cmos45nm)",
    )
    p.add_argument("--json", default=None, metavar="OUT", help="write the full report (JSON) here")
    p.add_argument(
        "--plot",
        default=None,
        help="write the chart of docs/visualization.md (energy per image per hardware profile, "
        "firing rate per layer) as PNG here",
    )
    p.add_argument(
        "--log", action="store_true", help="--plot: log energy axis (marked on the axis)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    n_images = data_image_count(args)
    from neurogshn.hardware.energy_report import energy_report, format_energy_report
    from neurogshn.utils.io import write_json_atomic

    report = energy_report(
        args.checkpoint,
        data=args.data,
        random_images=args.random,
        split=args.split,
        n_images=n_images,
        hardware=args.hardware,
    )
    print(format_energy_report(report))
    if args.json:
        write_json_atomic(args.json, report)
        print(f"full report (JSON): {args.json}")
    if args.plot:
        from neurogshn.viz import save_figure
        from neurogshn.viz.energy import plot_energy_report

        save_figure(plot_energy_report(report, log=args.log), args.plot)
        print(f"plot: {args.plot}")
    return 0
