#!/usr/bin/env python
"""Run an exported spiking encoder (``neurogshn export --target lava``) in Lava on the CPU.

Usage::

    python hardware/runners/run_lava.py --export DIR [--inputs X.npy | --random N]
        [--out spikes.npz] [--tag fixed_pt]

``X.npy`` holds encoder inputs (``N×F`` float, after the host's input normalisation: the
sidecar's ``in_features``). The host part (``W0 x + b0`` → graded messages) is computed from
``<name>.host.safetensors`` exactly as described in the sidecar; the network itself runs in
``Loihi2SimCfg(select_tag=TAG)``. The script compares Lava's spikes with the NumPy fixed-point
reference and exits 1 if they differ (only meaningful for ``fixed_pt``). See LOIHI.md for
running the same network on Loihi hardware.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--export", required=True, help="export directory")
    p.add_argument("--name", default=None, help="export name when DIR holds several")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--inputs", help=".npy file with N×F encoder inputs")
    src.add_argument("--random", type=int, metavar="N", help="N random standard-normal nodes")
    p.add_argument("--out", default=None, help="write per-layer spikes (T×N×H) to this .npz")
    p.add_argument("--tag", default="fixed_pt", choices=("fixed_pt", "floating_pt"))
    args = p.parse_args(argv)

    from neurogshn.hardware.export import load_export
    from neurogshn.hardware.fixed_point import FixedPointNetwork
    from neurogshn.hardware.lava_runner import run_lava

    exp = load_export(args.export, args.name)
    f = int(exp.sidecar["in_features"])
    if args.inputs:
        x = np.load(args.inputs, allow_pickle=False)
    else:
        x = np.random.default_rng(0).standard_normal((args.random, f))
    if x.ndim != 2 or x.shape[1] != f:
        print(f"inputs must be N×{f}, got {x.shape}", file=sys.stderr)
        return 2
    a0, saturated = exp.host_input(x)
    start = time.perf_counter()
    spikes = run_lava(exp.net_path, a0, exp.time_steps, select_tag=args.tag)
    seconds = time.perf_counter() - start
    ref = FixedPointNetwork.from_netx(exp.net_path, exp.time_steps).run(a0)["spikes"]
    same = all(np.array_equal(s, r) for s, r in zip(spikes, ref, strict=True))
    for i, s in enumerate(spikes):
        print(f"layer {i}: {s.shape[-1]} neurons, firing rate {s.mean():.4f}")
    print(
        f"{x.shape[0]} nodes x {exp.time_steps} steps in {seconds:.2f} s (Lava {args.tag}); "
        f"saturated input messages: {saturated}; identical to fixed-point reference: {same}"
    )
    if args.out:
        np.savez_compressed(args.out, **{f"layer{i}": s for i, s in enumerate(spikes)})
    return 0 if same or args.tag != "fixed_pt" else 1


if __name__ == "__main__":
    raise SystemExit(main())
