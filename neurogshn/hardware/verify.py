"""Verification of an export: Lava vs fixed-point reference, float vs quantized, downstream.

1. Lava (``Loihi2SimCfg(select_tag='fixed_pt')``) against :class:`FixedPointNetwork`: must be
   spike-for-spike identical.
2. The float Norse encoder against the quantized network (fixed-point reference): spike
   agreement and firing-rate error per layer.
3. Downstream retrieval with the quantized spiking branch in place of the float one: the
   model's ``spiking_encoder`` module is swapped for :class:`QuantizedSpikingEncoder` (same call
   signature and output type), so the model itself needs no hook.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from neurogshn.errors import DataError, ExportError
from neurogshn.hardware.export import LoadedExport
from neurogshn.hardware.fixed_point import FixedPointNetwork
from neurogshn.utils.names import layer_name


class QuantizedSpikingEncoder(nn.Module):
    """Drop-in replacement of a ``SpikingEncoder`` computing with the exported integers.

    Forward: encoder input ``x`` (``N×F``) → host graded input → fixed-point reference →
    :class:`~neurogshn.model.spiking.SpikingEncoderOutput` with float 0/1 spikes.
    """

    def __init__(self, export: LoadedExport, template: nn.Module | None = None) -> None:
        super().__init__()
        self.export = export
        self.reference = FixedPointNetwork.from_netx(export.net_path, export.time_steps)
        sizes = export.sidecar["sizes"]
        self.in_features = int(export.sidecar["in_features"])
        self.hidden_features = tuple(int(s) for s in sizes)
        self.time_steps = export.time_steps
        self.neuron = getattr(template, "neuron", None)
        self.saturated = 0

    @property
    def out_features(self) -> int:
        return self.hidden_features[-1]

    def forward(self, x: Tensor, record_voltages: bool = False) -> Any:
        from neurogshn.model.spiking import SpikingEncoderOutput

        a0, sat = self.export.host_input(x.detach().cpu().double().numpy())
        self.saturated += sat
        spikes = self.reference.run(a0)["spikes"]
        out = [torch.from_numpy(s.astype(np.float32)).to(x.device) for s in spikes]
        return SpikingEncoderOutput(out, out[-1].mean(dim=0), None)


@contextmanager
def swapped_spiking_encoder(model: nn.Module, replacement: nn.Module) -> Iterator[nn.Module]:
    """Temporarily replace ``model.spiking_encoder`` (restored on exit)."""
    original = model.spiking_encoder
    model.spiking_encoder = replacement
    try:
        yield model
    finally:
        model.spiking_encoder = original


def capture_encoder_inputs(branch: Any, graphs: Sequence[Any]) -> list[np.ndarray]:
    """The spiking encoder's input for each graph (``N_i×F`` float64 arrays).

    For a GSHN branch the input is recorded with a forward pre-hook on
    ``model.spiking_encoder`` during ``model.encode_image``; for a stand-alone encoder it is
    ``graph.x``.
    """
    from torch_geometric.data import Batch

    out: list[np.ndarray] = []
    if branch.model is None:
        for g in graphs:
            x = g.x.detach().cpu().double().numpy()
            if x.shape[1] != branch.encoder.in_features:
                raise DataError(
                    "<graphs>",
                    f"node features have {x.shape[1]} dims, the encoder expects "
                    f"{branch.encoder.in_features}",
                )
            out.append(x)
        return out
    model = branch.model
    seen: list[Tensor] = []
    handle = model.spiking_encoder.register_forward_pre_hook(
        lambda _m, args: seen.append(args[0].detach().cpu())
    )
    try:
        with torch.no_grad():
            for g in graphs:
                seen.clear()
                model.encode_image(Batch.from_data_list([g]))
                if not seen:
                    raise ExportError("the model's encode_image did not call spiking_encoder")
                out.append(seen[0].double().numpy())
    finally:
        handle.remove()
    return out


def spike_agreement(float_spikes: list[Any], q_spikes: list[np.ndarray]) -> list[dict[str, float]]:
    """Per layer: fraction of identical (step, node, neuron) entries and firing-rate errors."""
    rows = []
    for li, (f, q) in enumerate(zip(float_spikes, q_spikes, strict=True)):
        f = np.asarray(f, dtype=bool)
        q = np.asarray(q, dtype=bool)
        rate_f = f.mean(axis=0)  # N×H
        rate_q = q.mean(axis=0)
        rows.append(
            {
                "layer": li,
                "spike_agreement": float((f == q).mean()),
                "rate_float": float(rate_f.mean()),
                "rate_quantized": float(rate_q.mean()),
                "rate_abs_error_mean": float(np.abs(rate_f - rate_q).mean()),
                "spike_count_float": int(f.sum()),
                "spike_count_quantized": int(q.sum()),
            }
        )
    return rows


def float_spikes(encoder: nn.Module, x: np.ndarray) -> list[np.ndarray]:
    """The float Norse encoder's spikes (``T×N×H`` bool per layer)."""
    dev = next(encoder.parameters()).device
    with torch.no_grad():
        out = encoder(torch.as_tensor(x, dtype=torch.float32, device=dev))
    return [s.detach().cpu().numpy() > 0.5 for s in out.spikes]


def verify_export(
    branch: Any,
    export: LoadedExport,
    inputs: Sequence[np.ndarray],
    lava: bool = True,
    lava_max_nodes: int | None = 256,
) -> dict[str, Any]:
    """Checks (1) and (2) on the given encoder inputs (one array per image)."""
    from neurogshn.hardware.lava_runner import run_lava

    if not inputs:
        raise DataError("<inputs>", "no images to verify on")
    x = np.concatenate([np.asarray(i, np.float64) for i in inputs])
    if x.shape[1] != int(export.sidecar["in_features"]):
        raise ExportError(
            f"{export.net_path}: export expects {export.sidecar['in_features']} input features, "
            f"the data gives {x.shape[1]}"
        )
    ref = FixedPointNetwork.from_netx(export.net_path, export.time_steps)
    a0, saturated = export.host_input(x)
    t0 = time.perf_counter()
    q = ref.run(a0)["spikes"]
    t_ref = time.perf_counter() - t0
    report: dict[str, Any] = {
        "images": len(inputs),
        "nodes": int(x.shape[0]),
        "time_steps": export.time_steps,
        "saturated_input_messages": saturated,
        "reference_seconds": t_ref,
    }
    if lava:
        n_lava = x.shape[0] if lava_max_nodes is None else min(x.shape[0], lava_max_nodes)
        t0 = time.perf_counter()
        lv = run_lava(export.net_path, a0[:n_lava], export.time_steps)
        equal = [bool(np.array_equal(l_, r[:, :n_lava])) for l_, r in zip(lv, q, strict=True)]
        mism = sum(int((l_ != r[:, :n_lava]).sum()) for l_, r in zip(lv, q, strict=True))
        total = sum(int(r[:, :n_lava].size) for r in q)
        report["lava_vs_reference"] = {
            "nodes": n_lava,
            "identical_per_layer": equal,
            "mismatching_entries": mism,
            "agreement": 1.0 - mism / max(total, 1),
            "lava_seconds": time.perf_counter() - t0,
            "run_config": "Loihi2SimCfg(select_tag='fixed_pt')",
        }
    report["float_vs_quantized"] = spike_agreement(float_spikes(branch.encoder, x), q)
    return report


def downstream_retrieval(
    branch: Any,
    export: LoadedExport,
    data_root: str | Path,
    split: str,
    graphs: Any,
    max_images: int | None = None,
) -> dict[str, Any]:
    """Retrieval metrics of the GSHN with the float and with the quantized spiking branch."""
    if branch.model is None:
        return {"skipped": "stand-alone encoder checkpoint: no GSHN model to evaluate"}
    from neurogshn.data.coco import CocoPanopticDataset
    from neurogshn.tasks.metrics import hard_negative_kinds
    from neurogshn.tasks.retrieval import evaluate_retrieval

    coco = CocoPanopticDataset(data_root, split)
    hn = Path(data_root) / "annotations" / f"hard_negatives_{split}.json"
    hn_arg = hn if hn.is_file() else None
    model = branch.model
    float_m = evaluate_retrieval(model, graphs, coco, hn_arg, max_images=max_images)
    kinds = [f"{kind}_acc" for kind in hard_negative_kinds(float_m)]
    keys = ("i2t_R@1", "t2i_R@1", "rsum", *kinds, "hard_negative_acc")
    qenc = QuantizedSpikingEncoder(export, model.spiking_encoder)
    with swapped_spiking_encoder(model, qenc):
        quant_m = evaluate_retrieval(model, graphs, coco, hn_arg, max_images=max_images)
    out: dict[str, Any] = {"float": {}, "quantized": {}, "delta_points": {}}
    for k in keys:
        if k in float_m and k in quant_m:
            out["float"][k] = float(float_m[k])
            out["quantized"][k] = float(quant_m[k])
            scale = 1.0 if k == "rsum" else 100.0  # fractions → percentage points
            out["delta_points"][k] = scale * float(quant_m[k] - float_m[k])
    out["num_images"] = float_m.get("num_images")
    return out


def load_data_inputs(
    branch: Any,
    data_root: str | Path,
    split: str,
    n_images: int | None,
    checkpoint: str | Path | None = None,
    progress: bool = False,
) -> tuple[list[np.ndarray], Any, dict[str, float]]:
    """Encoder inputs of the first ``n_images`` graphs of a split, the graph data set and
    graph-size statistics (``nodes_per_image``, ``edges_per_image``)."""

    from neurogshn.graph.cache import load_graph_dataset
    from neurogshn.graph.config import GraphConfig

    spec = GraphConfig.from_checkpoint(checkpoint) if checkpoint is not None else GraphConfig()
    graphs = load_graph_dataset(data_root, split, progress=progress, **asdict(spec))
    n = len(graphs) if n_images is None else min(n_images, len(graphs))
    if n == 0:
        raise DataError(data_root, f"split {split!r} has no graphs")
    chosen = [graphs[i] for i in range(n)]
    inputs = capture_encoder_inputs(branch, chosen)
    stats = {
        "nodes_per_image": float(np.mean([g.num_nodes for g in chosen])),
        "edges_per_image": float(np.mean([g.edge_index.shape[1] for g in chosen])),
        "edge_dim": float(chosen[0].edge_attr.shape[1]) if chosen[0].edge_attr is not None else 0,
        "node_features": float(chosen[0].x.shape[1]),
    }
    return inputs, graphs, stats


def random_inputs(
    in_features: int, n_images: int, nodes: int = 8, seed: int = 0
) -> list[np.ndarray]:
    """Standard-normal encoder inputs (a data-free smoke check; say so in reports)."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((nodes, in_features)) for _ in range(n_images)]


def _pct(x: float) -> str:
    return f"{100.0 * x:.2f} %"


def format_verify_report(report: dict[str, Any]) -> str:
    """A compact human-readable summary of a :func:`verify_export` report (the CLI's stdout).

    The last line is ``PASS``/``FAIL`` for the 100 % Lava check (or says it was skipped).
    """
    lines = [
        "neurogshn verify",
        f"  inputs: {report.get('inputs', '?')}",
        f"  images {report['images']}, nodes {report['nodes']}, time steps "
        f"{report['time_steps']}, saturated input messages {report['saturated_input_messages']}",
        "",
    ]
    lava = report.get("lava_vs_reference")
    lines.append("(1) Lava fixed_pt vs fixed-point reference")
    if lava is None:
        lines.append("  skipped (--no-lava)")
    else:
        ident = ", ".join(
            f"{layer_name(i)} {'yes' if ok else 'NO'}"
            for i, ok in enumerate(lava["identical_per_layer"])
        )
        lines += [
            f"  run config: {lava['run_config']}",
            f"  nodes: {lava['nodes']} (of {report['nodes']})",
            f"  agreement: {_pct(lava['agreement'])} "
            f"({lava['mismatching_entries']} mismatching entries)",
            f"  identical per layer: {ident}",
        ]
    lines += ["", "(2) float (Norse) vs quantized (fixed-point reference), per layer"]
    lines.append(f"  {'layer':<7}{'spike agreement':>17}{'rate float':>12}{'rate quant.':>13}")
    for row in report.get("float_vs_quantized", []):
        lines.append(
            f"  {'layer' + str(row['layer']):<7}{_pct(row['spike_agreement']):>17}"
            f"{row['rate_float']:>12.4f}{row['rate_quantized']:>13.4f}"
        )
    down = report.get("downstream")
    if down is not None:
        lines += ["", "(3) downstream retrieval: float vs quantized spiking branch"]
        if "skipped" in down:
            lines.append(f"  skipped: {down['skipped']}")
        else:
            if down.get("num_images") is not None:
                lines.append(f"  images: {int(down['num_images'])}")
            width = max(18, *(len(key) + 2 for key in down["float"]))
            lines.append(f"  {'metric':<{width}}{'float':>9}{'quantized':>11}{'delta (pt)':>12}")
            for key in down["float"]:  # retrieval, then one row per hard-negative kind
                f, q, d = down["float"][key], down["quantized"][key], down["delta_points"][key]
                scale = 1.0 if key == "rsum" else 100.0
                lines.append(f"  {key:<{width}}{scale * f:>9.2f}{scale * q:>11.2f}{d:>+12.2f}")
            lines.append("  (R@1 and accuracies in %, rsum in points)")
    if "seconds" in report:
        lines += ["", f"wall time: {report['seconds']:.1f} s"]
    if lava is None:
        lines.append("Lava check: SKIPPED")
    elif lava["mismatching_entries"]:
        lines.append(
            "Lava check: FAIL: Lava and the fixed-point reference DIFFER "
            f"(agreement {_pct(lava['agreement'])}, must be 100 %)"
        )
    else:
        lines.append("Lava check: PASS (100 % identical spikes)")
    return "\n".join(lines)
