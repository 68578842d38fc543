"""``neurogshn export``: the spiking branch as a lava-dl netx network (Loihi) or a NIR graph."""

from __future__ import annotations

import argparse
import json

from neurogshn.cli.types import nonnegative_int, positive_float, positive_int


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
    p.add_argument("--target", choices=("lava", "nir"), default="lava")
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
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from neurogshn.hardware.export import export_lava, export_nir
    from neurogshn.hardware.source import load_spiking_branch

    branch = load_spiking_branch(args.checkpoint, device=args.device)
    calib = None
    if args.data is not None:
        from neurogshn.hardware.verify import load_data_inputs

        inputs, _, _ = load_data_inputs(
            branch, args.data, args.split, args.calib_images, args.checkpoint
        )
        calib = np.concatenate(inputs)
    if args.qat:
        if calib is None:
            print("neurogshn export: --qat needs --data (encoder inputs to fine-tune on)")
            return 2
        from neurogshn.hardware.qat import qat_finetune
        from neurogshn.hardware.source import save_encoder_checkpoint

        result = qat_finetune(branch.encoder, calib, steps=args.qat_steps)
        print(json.dumps({"qat": result.summary()}, indent=2))
        if args.save_qat:
            save_encoder_checkpoint(branch.encoder, args.save_qat)
    out = Path(args.out)
    if args.target == "nir":
        res = export_nir(branch, out, args.name)
        print(f"wrote {out / res.sidecar['nir_file']} and {res.sidecar_path}")
        return 0
    res = export_lava(branch, out, args.name, calib, clip=args.clip, weight_scale=args.weight_scale)
    for layer in res.sidecar["quantization"]["layers"]:
        keys = ("weight_rel_rms_error", "weights_clipped", "input_rel_rms_error", "vth_mant")
        print(layer["name"], {k: layer[k] for k in keys if k in layer})
    print(f"wrote {res.net_path}, {res.sidecar_path} ({res.sidecar['export_seconds']:.2f} s)")
    return 0
