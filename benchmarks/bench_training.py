"""Training-step benchmark of GSHN, all figures from one run on this machine.

Measures
  1. training throughput (graphs/s, full optimizer steps incl. the text encoder) for the modes
     ``full``, ``gat_only`` and ``snn_only`` -> the spiking branch's overhead as a time ratio;
  2. forward+backward time and peak tensor memory against nodes per graph (8 … 512, synthetic
     scene graphs: kNN + global-node edges like the builder's "full" edge set) and against
     batch size, with the fitted growth exponent (least squares on log-log);
  3. the FLOPs of a training step (torch.utils.flop_counter.FlopCounterMode, forward+backward)
     and the fraction of the machine's own fp32 matmul peak (timed here, same process) that
     the step reaches.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_training.py [--quick] [--json out.json]

Peak memory on CPU is the high-water mark of live tensor bytes allocated during the step
(tracked with a TorchDispatchMode; parameters and optimizer state excluded); on CUDA it is
``torch.cuda.max_memory_allocated`` minus the memory in use before the step.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode
from torch_geometric.data import Batch, Data

WORDS = {
    "shape": ["circle", "square", "triangle", "diamond", "cross"],
    "color": ["red", "green", "blue", "yellow", "purple", "orange", "white", "gray"],
    "rel": ["left of", "right of", "above", "below"],
}


# ---------------------------------------------------------------------------------------------
def synthetic_graph(n: int, feat: int, edge_dim: int, gen: torch.Generator, k: int = 4) -> Data:
    """A scene-graph-like ``Data``: node 0 global, kNN (k) among the rest, global edges."""
    pos = torch.rand(n, 2, generator=gen)
    pos[0] = 0.5
    src, dst = [], []
    m = n - 1
    if m > 1:
        d = torch.cdist(pos[1:], pos[1:])
        d.fill_diagonal_(float("inf"))
        nn_idx = d.topk(min(k, m - 1), largest=False).indices + 1
        for i in range(m):
            for j in nn_idx[i].tolist():
                src += [i + 1, j]
                dst += [j, i + 1]
    src += [0] * m + list(range(1, n))
    dst += list(range(1, n)) + [0] * m
    ei = torch.unique(torch.tensor([src, dst], dtype=torch.long), dim=1)
    is_global = torch.zeros(n, dtype=torch.bool)
    is_global[0] = True
    return Data(
        x=torch.randn(n, feat, generator=gen),
        edge_index=ei,
        edge_attr=torch.randn(ei.shape[1], edge_dim, generator=gen),
        pos=pos,
        is_global=is_global,
        image_id=0,
        num_nodes=n,
    )


def synthetic_captions(b: int, gen: torch.Generator) -> tuple[list[str], list[str]]:
    def pick(key: str) -> str:
        words = WORDS[key]
        return words[int(torch.randint(len(words), (1,), generator=gen))]

    caps, negs = [], []
    for _ in range(b):
        a, c1, r, c2, s2 = pick("shape"), pick("color"), pick("rel"), pick("color"), pick("shape")
        caps.append(f"a {c1} {a} {r} a {c2} {s2}")
        negs.append(f"a {c2} {s2} {r} a {c1} {a}")
    return caps, negs


class LiveTensorBytes(TorchDispatchMode):
    """High-water mark of bytes held by tensors created inside the mode (storages deduped)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen: set[int] = set()

    def _track(self, t: torch.Tensor) -> None:
        st = t.untyped_storage()
        key = st.data_ptr()
        if key in self._seen or st.nbytes() == 0:
            return
        self._seen.add(key)
        size = st.nbytes()
        self.live += size
        self.peak = max(self.peak, self.live)

        def release(key: int = key, size: int = size) -> None:
            self._seen.discard(key)
            self.live -= size

        weakref.finalize(st, release)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, list | tuple) else (out,):
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                self._track(t)
        return out


# ---------------------------------------------------------------------------------------------
def build(mode: str, name: str, feat: int, edge_dim: int, device: torch.device) -> tuple[Any, Any]:
    from neurogshn.losses.objective import PretrainingObjective
    from neurogshn.model.gshn import GSHN

    extra: dict[str, Any] = {}
    if mode == "gat_only":
        extra.update(cl_weight=0.0, stl_weight=0.0)
    torch.manual_seed(0)
    model = GSHN.from_config_name(
        name, node_features=feat, edge_features=edge_dim, mode=mode, **extra
    ).to(device)
    return model, PretrainingObjective()


def make_step(model: Any, objective: Any, opt: torch.optim.Optimizer) -> Callable[[Any], float]:
    def step(batch: Any) -> float:
        out = objective(model, batch)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        return float(out["loss"].detach())

    return step


def make_batch(b: int, n: int, feat: int, edge_dim: int, seed: int, device: torch.device) -> Any:
    from neurogshn.losses.objective import PretrainBatch

    gen = torch.Generator().manual_seed(seed)
    graphs = Batch.from_data_list([synthetic_graph(n, feat, edge_dim, gen) for _ in range(b)])
    caps, negs = synthetic_captions(b, gen)
    return PretrainBatch(graphs.to(device), caps, negs)


def timed(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs (after one warm-up run)."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def matmul_peak(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """Measured fp32 GEMM throughput (FLOP/s) of this machine: ``2n³`` per ``n×n`` product."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    t = timed(lambda: a @ b, repeats, device)
    return 2 * n**3 / t


def fwd_bwd(model: Any, objective: Any, batch: Any, device: torch.device) -> tuple[float, int]:
    def run() -> None:
        model.zero_grad(set_to_none=True)
        objective(model, batch)["loss"].backward()

    seconds = timed(run, 3, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        model.zero_grad(set_to_none=True)
        tracker = LiveTensorBytes()
        with tracker:
            objective(model, batch)["loss"].backward()
        peak = tracker.peak
    return seconds, int(peak)


def loglog_slope(x: list[float], y: list[float]) -> float:
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="named GSHN configuration")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=32, help="batch size of the mode comparison")
    parser.add_argument("--nodes", type=int, default=12, help="nodes per graph (mode comparison)")
    parser.add_argument("--steps", type=int, default=8, help="timed optimizer steps per mode")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    from neurogshn.model.config import DEFAULT_EDGE_FEATURES, DEFAULT_NODE_FEATURES

    feat, edge_dim = DEFAULT_NODE_FEATURES, DEFAULT_EDGE_FEATURES
    node_sizes = [8, 16, 32, 64, 128, 256, 512]
    batch_sizes = [4, 8, 16, 32, 64]
    if args.quick:
        args.model, args.batch, args.nodes, args.steps = "gshn-tiny", 4, 6, 2
        node_sizes, batch_sizes = [8, 16, 32], [2, 4]
    res: dict[str, Any] = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0],
            "device": str(device),
            "torch": torch.__version__,
        },
        "model": args.model,
    }
    print(f"machine: {res['machine']}")

    # 1. matmul peak ------------------------------------------------------------------------
    peak = matmul_peak(device, 512 if args.quick else 2048)
    res["matmul_peak_gflops"] = peak / 1e9
    print(f"fp32 matmul peak (measured, 2048^3): {peak / 1e9:.1f} GFLOP/s")

    # 2. modes ------------------------------------------------------------------------------
    res["modes"] = {}
    for mode in ("full", "gat_only", "snn_only"):
        model, objective = build(mode, args.model, feat, edge_dim, device)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        step = make_step(model, objective, opt)
        batches = [
            make_batch(args.batch, args.nodes, feat, edge_dim, s, device) for s in range(args.steps)
        ]
        step(batches[0])  # warm-up (fills the text cache of these captions, allocator)
        t0 = time.perf_counter()
        for b in batches:
            step(b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = (time.perf_counter() - t0) / len(batches)
        res["modes"][mode] = {"step_s": dt, "graphs_per_s": args.batch / dt}
        if mode == "full":
            model.zero_grad(set_to_none=True)
            with FlopCounterMode(display=False) as counter:
                objective(model, batches[0])["loss"].backward()
            flops = counter.get_total_flops()
            res["step_flops"] = flops
            res["step_achieved_gflops"] = flops / dt / 1e9
            res["fraction_of_matmul_peak"] = flops / dt / peak
        del model, objective, opt
    full, gat = res["modes"]["full"]["step_s"], res["modes"]["gat_only"]["step_s"]
    res["spiking_overhead_ratio"] = full / gat
    print(f"\ntraining throughput, batch {args.batch} x {args.nodes} nodes ({args.model}):")
    for mode, r in res["modes"].items():
        print(f"  {mode:<9} {r['graphs_per_s']:8.1f} graphs/s  ({1000 * r['step_s']:.0f} ms/step)")
    print(f"  spiking overhead (full / gat_only step time): {res['spiking_overhead_ratio']:.2f}x")
    print(
        f"  step FLOPs (fwd+bwd, FlopCounterMode): {res['step_flops'] / 1e9:.2f} GFLOP -> "
        f"{res['step_achieved_gflops']:.1f} GFLOP/s = "
        f"{100 * res['fraction_of_matmul_peak']:.1f} % of the measured matmul peak"
    )

    # 3. scaling ----------------------------------------------------------------------------
    model, objective = build("full", args.model, feat, edge_dim, device)
    scale_batch = 2 if args.quick else 8
    rows = []
    for n in node_sizes:
        s, m = fwd_bwd(
            model, objective, make_batch(scale_batch, n, feat, edge_dim, n, device), device
        )
        rows.append({"nodes": n, "batch": scale_batch, "fwd_bwd_s": s, "peak_bytes": m})
    res["vs_nodes"] = rows
    res["time_exponent_nodes"] = loglog_slope(
        [r["nodes"] for r in rows], [r["fwd_bwd_s"] for r in rows]
    )
    res["memory_exponent_nodes"] = loglog_slope(
        [r["nodes"] for r in rows], [r["peak_bytes"] for r in rows]
    )
    # Growth at the large end (fixed costs such as the text encoder dominate small graphs).
    tail = rows[-3:]
    res["time_exponent_nodes_tail"] = loglog_slope(
        [r["nodes"] for r in tail], [r["fwd_bwd_s"] for r in tail]
    )
    print(f"\nforward+backward vs nodes per graph (batch {scale_batch}):")
    print(f"  {'nodes':>6} {'time ms':>9} {'peak MiB':>9}")
    for r in rows:
        print(f"  {r['nodes']:>6} {1000 * r['fwd_bwd_s']:>9.1f} {r['peak_bytes'] / 2**20:>9.1f}")
    print(
        f"  fitted exponent: time ~ nodes^{res['time_exponent_nodes']:.2f} "
        f"(last three sizes: ^{res['time_exponent_nodes_tail']:.2f}), "
        f"memory ~ nodes^{res['memory_exponent_nodes']:.2f}"
    )

    rows = []
    n_fixed = 8 if args.quick else 16
    for b in batch_sizes:
        s, m = fwd_bwd(
            model, objective, make_batch(b, n_fixed, feat, edge_dim, 100 + b, device), device
        )
        rows.append({"batch": b, "nodes": n_fixed, "fwd_bwd_s": s, "peak_bytes": m})
    res["vs_batch"] = rows
    res["time_exponent_batch"] = loglog_slope(
        [r["batch"] for r in rows], [r["fwd_bwd_s"] for r in rows]
    )
    res["memory_exponent_batch"] = loglog_slope(
        [r["batch"] for r in rows], [r["peak_bytes"] for r in rows]
    )
    print(f"\nforward+backward vs batch size ({n_fixed} nodes per graph):")
    print(f"  {'batch':>6} {'time ms':>9} {'peak MiB':>9} {'graphs/s':>9}")
    for r in rows:
        print(
            f"  {r['batch']:>6} {1000 * r['fwd_bwd_s']:>9.1f} {r['peak_bytes'] / 2**20:>9.1f} "
            f"{r['batch'] / r['fwd_bwd_s']:>9.1f}"
        )
    print(
        f"  fitted exponent: time ~ batch^{res['time_exponent_batch']:.2f}, "
        f"memory ~ batch^{res['memory_exponent_batch']:.2f}"
    )
    res["machine"]["load_avg_1m_end"] = os.getloadavg()[0]
    print(
        f"\nload average (1 min) at start / end: {res['machine']['load_avg_1m']:.2f} / "
        f"{res['machine']['load_avg_1m_end']:.2f}"
    )
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    assert all(math.isfinite(r["fwd_bwd_s"]) for r in res["vs_nodes"])
    return res


if __name__ == "__main__":
    main()
