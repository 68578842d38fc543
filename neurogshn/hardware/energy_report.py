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
        inputs, _, stats = load_data_inputs(branch, data, split, n_images, checkpoint)
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


def plot_energy(report: dict[str, Any], path: str | Path) -> Path:
    """Bar chart of the per-image energy estimates (log scale) and per-layer firing rates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_image = report["energy_per_image_pJ"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    names = list(per_image)
    ax1.bar(names, [per_image[k] / 1e6 for k in names], color="tab:blue")
    ax1.set_yscale("log")
    ax1.set_ylabel("energy per image (µJ, ESTIMATE)")
    ax1.tick_params(axis="x", rotation=30)
    ax1.set_title("Energy estimates per image")
    layers = report["activity_quantized"]["layers"]
    ax2.bar([layer["name"] for layer in layers], [layer["firing_rate"] for layer in layers])
    ax2.set_ylabel("firing rate (spikes / neuron / step)")
    ax2.set_title("Quantized branch activity")
    fig.text(
        0.5,
        0.005,
        "Estimates from per-operation constants (hardware/profiles)",
        ha="center",
        fontsize=8,
    )
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
