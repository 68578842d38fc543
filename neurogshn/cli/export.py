"""``neurogshn export``: the spiking branch as a lava-dl netx network (Loihi) or a NIR graph."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from neurogshn.cli.types import nonnegative_int, positive_float, positive_int
from neurogshn.hardware.nir_export import DEFAULT_NIR_DT

# Kept in step with neurogshn.hardware.nir_consumers.NIR_CONSUMERS, which imports torch (the
# CLI registers its commands without it); a test checks the two agree.
NIR_CONSUMER_NAMES = ("norse", "snntorch", "rockpool")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export the spiking encoder to lava-dl netx (.net + JSON sidecar) or NIR",
        description=(
            "Quantize the checkpoint's spiking encoder for Loihi (8-bit weights, 12-bit decays, "
            "netx thresholds) and write <name>.net, <name>.json (sidecar) and "
            "<name>.host.safetensors, or write a NIR graph (--target nir). Values Loihi cannot "
            "express are refused unless --clip is given (the report says how much was clipped)."
        ),
    )
    p.add_argument("--checkpoint", required=True, help="GSHN or spiking-encoder checkpoint dir")
    p.add_argument(
        "--target",
        choices=("lava", "nir"),
        default="lava",
        help="lava: quantized lava-dl netx network for Loihi; nir: float NIR graph",
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--name", default="spiking_encoder", help="file name stem")
    p.add_argument("--clip", action="store_true", help="clip out-of-range weights")
    p.add_argument(
        "--weight-scale",
        type=positive_float,
        default=None,
        help="one fixed weight scale for spiking layers (default: per layer 254/max|W|)",
    )
    p.add_argument("--data", default=None, help="data set root for input-scale calibration")
    p.add_argument("--split", default="train", help="calibration split (default train)")
    p.add_argument("--calib-images", type=positive_int, default=32, help="calibration images")
    p.add_argument("--qat", action="store_true", help="quantization-aware fine-tune first")
    p.add_argument("--qat-steps", type=nonnegative_int, default=200, help="QAT optimisation steps")
    p.add_argument("--save-qat", default=None, help="write the QAT encoder checkpoint here")
    p.add_argument(
        "--dt",
        type=positive_float,
        default=DEFAULT_NIR_DT,
        help="NIR: time step in seconds at which the continuous-time graph reproduces the "
        f"encoder (default {DEFAULT_NIR_DT:g}, the step snnTorch's importer assumes)",
    )
    p.add_argument(
        "--consumers",
        default=",".join(NIR_CONSUMER_NAMES),
        help="NIR: comma-separated simulators to run the export in and compare spikes per layer "
        f"(default {','.join(NIR_CONSUMER_NAMES)}; 'none' to skip); inputs are --data's "
        "calibration images, or seeded standard-normal vectors without --data",
    )
    p.add_argument("--device", default="cpu", help="device for QAT and calibration")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from neurogshn.hardware.export import export_lava
    from neurogshn.hardware.source import load_spiking_branch

    branch = load_spiking_branch(args.checkpoint, device=args.device)
    calib = None
    if args.data is not None:
        from neurogshn.hardware.verify import load_data_inputs

        inputs, _, _ = load_data_inputs(
            branch, args.data, args.split, args.calib_images, args.checkpoint, progress=True
        )
        calib = np.concatenate(inputs)
    if args.qat:
        if calib is None:
            print("neurogshn export: --qat needs --data (encoder inputs to fine-tune on)")
            return 2
        from neurogshn.hardware.qat import qat_finetune
        from neurogshn.hardware.source import save_encoder_checkpoint
        from neurogshn.utils.names import layer_name

        result = qat_finetune(branch.encoder, calib, steps=args.qat_steps)
        print(
            f"quantization-aware fine-tuning: {result.steps} steps, {result.seconds:.1f} s, "
            f"kept: {result.kept}; quantized vs float spike agreement on hold-out "
            "nodes: "
            + ", ".join(
                f"{layer_name(i)} {100 * a:.2f} % -> {100 * b:.2f} %"
                for i, (a, b) in enumerate(
                    zip(result.agreement_before, result.agreement_after, strict=True)
                )
            )
        )
        if args.save_qat:
            save_encoder_checkpoint(branch.encoder, args.save_qat)
    out = Path(args.out)
    if args.target == "nir":
        return _export_nir(args, branch, calib, out)
    res = export_lava(branch, out, args.name, calib, clip=args.clip, weight_scale=args.weight_scale)
    print(format_quantization_table(res.sidecar["quantization"]["layers"]))
    print(f"wrote ({res.sidecar['export_seconds']:.2f} s):")
    print(f"  {res.net_path}  (lava-dl netx network: the chip side)")
    print(f"  {out / res.sidecar['host_file']}  (layer0's float W0, b0: applied on the host)")
    print(f"  {res.sidecar_path}  (sidecar: T, input encoding, scales, how to load it in Lava)")
    return 0


def format_quantization_table(layers: list[dict[str, Any]]) -> str:
    """One row per layer of the sidecar's ``quantization.layers``: what each layer receives,
    its threshold mantissa and the relative errors quantization introduced."""

    def pct(layer: dict[str, Any], key: str) -> str:
        return f"{100 * abs(layer[key]):.3f} %" if key in layer else "-"

    rows = [("layer", "input", "vth_mant", "weight RMS err", "weights clipped", "vth err")]
    for layer in layers:
        rows.append(
            (
                layer["name"],
                "graded (host W0 x + b0)" if "input_scale" in layer else "binary spikes",
                str(layer.get("vth_mant", "-")),
                pct(layer, "weight_rel_rms_error"),
                str(layer.get("weights_clipped", "-")),
                pct(layer, "threshold_rel_error"),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def _export_nir(args: argparse.Namespace, branch: Any, calib: Any, out: Path) -> int:
    """``--target nir``: write the graph, run it in the chosen consumers, print the table."""
    import numpy as np

    from neurogshn.hardware.export import export_nir
    from neurogshn.hardware.nir_consumers import format_consumer_table
    from neurogshn.hardware.verify import random_inputs

    names = [n.strip() for n in args.consumers.split(",") if n.strip()]
    if names == ["none"]:
        names = []
    unknown = [n for n in names if n not in NIR_CONSUMER_NAMES]
    if unknown:
        print(
            f"neurogshn export: unknown --consumers {unknown}; choose from "
            f"{','.join(NIR_CONSUMER_NAMES)} or 'none'"
        )
        return 2
    if calib is not None:
        inputs, source = (
            calib,
            f"{len(calib)} node inputs of {args.calib_images} {args.split} images of {args.data}",
        )
    else:
        in_features = branch.encoder.in_features
        inputs = np.concatenate(random_inputs(in_features, 8, nodes=32))
        source = "256 seeded standard-normal vectors (pass --data for real node inputs)"
    res = export_nir(
        branch, out, args.name, args.dt, inputs if names else None, source, names or None
    )
    reports = res.sidecar["consumers"]
    if reports:
        print(f"spike agreement with the encoder per layer ({source}):")
        print(format_consumer_table(reports))
        for r in reports:
            if r["differences"] and r["status"] == "ok":
                print(
                    f"  {r['consumer']} cannot express the encoder exactly: "
                    + "; ".join(r["differences"])
                )
    print("wrote:")
    print(f"  {out / res.sidecar['nir_file']}  (NIR graph, dt = {args.dt:g} s)")
    print(f"  {res.sidecar_path}  (sidecar: parameters, how to load it, consumer agreement)")
    return 0
