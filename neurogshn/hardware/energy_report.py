"""``neurogshn energy`` end to end: activity of the quantized branch on data → estimates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from neurogshn.hardware.energy import activity_from_spikes, estimate_energy, gatv2_macs
from neurogshn.hardware.fixed_point import FixedPointNetwork
from neurogshn.hardware.profiles import load_profile
from neurogshn.hardware.quantize import quantize_encoder


def _gat_macs(branch: Any, nodes: float, edges: float, edge_dim: int) -> float | None:
    cfg = getattr(branch.model, "config", None)
    if cfg is None or getattr(cfg, "mode", "full") == "snn_only":
        return None
    layers = int(getattr(cfg, "gat_layers", 0))
    dim = int(getattr(cfg, "embed_dim", 0))
    if not layers or not dim:
        return None
    edge_dim = int(getattr(cfg, "edge_features", edge_dim) or edge_dim)
    in_features = int(getattr(cfg, "node_features", dim))
    # GATStage: input projection F→D per node, then the GATv2 layers
    return nodes * in_features * dim + gatv2_macs(nodes, edges, dim, dim, layers, edge_dim)


def energy_report(
    checkpoint: str | Path,
    *,
    data: str | Path | None = None,
    random_images: int | None = None,
    split: str = "test",
    n_images: int = 64,
    hardware: str = "all",
) -> dict[str, Any]:
    """Activity and energy estimates of the checkpoint's spiking branch (see energy.py)."""
    from neurogshn.hardware.source import load_spiking_branch
    from neurogshn.hardware.verify import float_spikes, load_data_inputs, random_inputs

    branch = load_spiking_branch(checkpoint)
    if data is not None:
        inputs, _, stats = load_data_inputs(
            branch, data, split, n_images, checkpoint, progress=True
        )
        source = f"{data} ({split}, {len(inputs)} images)"
    else:
        n = int(random_images or 8)
        inputs = random_inputs(branch.encoder.in_features, n)
        stats = {"nodes_per_image": 8.0, "edges_per_image": 56.0, "edge_dim": 0.0}
        source = (
            f"random standard-normal inputs ({n} images x 8 nodes, fully connected graphs "
            "for the GAT count): smoke check only"
        )
    x = np.concatenate(inputs)
    qnet = quantize_encoder(branch.encoder, x)
    ref = FixedPointNetwork.from_quantized(qnet)
    a0, _ = qnet.host_input(x)
    run = ref.run(a0, record_state=True)
    active = [(u != 0) | (v != 0) for u, v in zip(run["u"], run["v"], strict=True)]
    act = activity_from_spikes(
        run["spikes"], qnet.in_features, active, stats["nodes_per_image"], stats["edges_per_image"]
    )
    f_act = activity_from_spikes(float_spikes(branch.encoder, x), qnet.in_features)
    cmos = load_profile("cmos45nm")
    loihi = load_profile("loihi1") if hardware in ("all", "loihi1") else None
    gat = _gat_macs(
        branch, stats["nodes_per_image"], stats["edges_per_image"], int(stats.get("edge_dim", 0))
    )
    est = estimate_energy(act, cmos, loihi, gat)
    if hardware == "loihi1":  # report the spiking branch on Loihi only
        for key in ("energy_per_node_pJ", "energy_per_image_pJ", "breakdown_per_node_pJ"):
            est[key].pop("snn_cmos45nm", None)
        for key in ("ann_over_snn_cmos45nm", "gat_over_snn_cmos45nm"):
            est["ratios"].pop(key, None)
    return {
        "checkpoint": str(checkpoint),
        "inputs": source,
        "hardware": hardware,
        "activity_quantized": act.to_dict(),
        "firing_rates_float": [layer.firing_rate for layer in f_act.layers],
        **est,
    }


_TARGETS = {
    "snn_cmos45nm": "spiking branch, 45 nm CMOS",
    "snn_loihi1": "spiking branch, Loihi 1 constants",
    "ann_cmos45nm": "ANN of the same shape, 45 nm CMOS",
    "gat_host_cmos45nm": "GAT stage on the host, 45 nm CMOS",
}
_RATIOS = {
    "ann_over_snn_cmos45nm": "ANN / SNN (45 nm CMOS)",
    "ann_cmos45nm_over_snn_loihi1": "ANN (45 nm CMOS) / SNN (Loihi 1)",
    "gat_over_snn_cmos45nm": "GAT (host) / SNN (45 nm CMOS)",
}


def format_energy_report(report: dict[str, Any]) -> str:
    """A compact human-readable summary of an :func:`energy_report` (the CLI's stdout)."""
    act = report["activity_quantized"]
    counts = report["counts_per_node"]
    lines = [
        "neurogshn energy: ALL FIGURES ARE ESTIMATES, NOT MEASUREMENTS",
        f"  {report['note']}",
        f"  checkpoint: {report['checkpoint']}",
        f"  inputs: {report['inputs']}",
        f"  time steps {act['time_steps']}, input features {act['in_features']}, "
        f"{act['nodes_per_image']:.2f} nodes and {act['edges_per_image']:.1f} edges per image, "
        f"{act['nodes_measured']} nodes measured",
        "",
        "firing rates (spikes / neuron / step)",
        f"  {'layer':<8}{'size':>6}{'quantized':>11}{'float':>9}",
    ]
    rates_f = report.get("firing_rates_float") or []
    for i, layer in enumerate(act["layers"]):
        rf = f"{rates_f[i]:.4f}" if i < len(rates_f) else "-"
        lines.append(f"  {layer['name']:<8}{layer['size']:>6}{layer['firing_rate']:>11.4f}{rf:>9}")
    lines += [
        "",
        "counts per node (quantized branch)",
        f"  synaptic ops:         {counts['synaptic_ops']:>14,.1f}",
        f"  spikes:               {counts['spikes']:>14,.1f}",
        f"  neuron updates:       {counts['neuron_updates']:>14,.1f}"
        f"  ({counts['neuron_updates_active']:,.1f} active)",
        f"  host projection MACs: {counts['host_projection_macs']:>14,.0f}",
        f"  ANN MACs:             {counts['ann_macs']:>14,.0f}",
    ]
    if report.get("gat_macs_per_image") is not None:
        lines.append(f"  GAT MACs per image:   {report['gat_macs_per_image']:>14,.0f}")
    per_node = report["energy_per_node_pJ"]
    per_image = report["energy_per_image_pJ"]
    lines += [
        "",
        "energy ESTIMATE per image",
        f"  {'target':<36}{'per node (pJ)':>15}{'per image (nJ)':>16}",
    ]
    for key, pj in per_image.items():
        label = _TARGETS.get(key, key)
        node = f"{per_node[key]:,.1f}" if key in per_node else "-"
        lines.append(f"  {label:<36}{node:>15}{pj / 1e3:>16.3f}")
    if report.get("ratios"):
        lines += ["", "ratios (of the estimates)"]
        for key, value in report["ratios"].items():
            lines.append(f"  {_RATIOS.get(key, key) + ':':<34}{value:>8.2f}")
    lines += ["", "profiles used"]
    for name, prof in report.get("profiles", {}).items():
        doi = f" (doi:{prof['doi']})" if prof.get("doi") else ""
        lines.append(f"  {name}: {prof['file']}")
        lines.append(f"    source: {prof['source']}{doi}")
    return "\n".join(lines)
