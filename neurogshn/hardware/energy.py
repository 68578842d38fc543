r"""Spike-rate, operation-count and energy **estimates** for the spiking branch.

Counts per node (one node = one pass of the encoder over ``T`` steps), layer ``l`` of size
:math:`H_l`, fan-in :math:`H_{l-1}` (:math:`F` for layer 0), spikes :math:`S_l`:

* synaptic ops into layer :math:`l \ge 1`: :math:`S_{l-1} \cdot H_l` (spikes × fan-out);
  into layer 0: :math:`H_0 T` graded messages through the identity synapse (fan-out 1);
* neuron updates: :math:`H_l T`, split into *active* (the neuron has a non-zero ``u`` or ``v``
  after the update, from the fixed-point reference) and *inactive*;
* host projection of layer 0: :math:`F H_0` MACs (once per node, the current is reused).

Energy models (pJ; constants from ``hardware/profiles``):

* Loihi 1: ``synops·E_syn + active·E_act + inactive·E_inact + spikes·E_spike`` + the host
  projection at 45 nm MAC energy (chip-to-chip routing hops are not counted);
* 45 nm CMOS SNN: ``synops·E_AC + F·H_0·E_MAC`` (the usual SNN convention);
* 45 nm CMOS ANN of the same shape: :math:`\sum_l H_{l-1} H_l \cdot E_{MAC}` (one pass);
* GAT stage on the host: its MACs × ``E_MAC`` (:func:`gatv2_macs`).

Per image = per node × nodes per image. Every figure is an estimate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from neurogshn.hardware.profiles import EnergyProfile
from neurogshn.utils.names import layer_name

ESTIMATE_NOTE = (
    "ESTIMATES from per-operation energy constants (see each profile's source); not "
    "measurements. Memory access, I/O, host-chip transfer and idle power are not included."
)


@dataclass
class LayerActivity:
    """Activity of one layer, averaged per node.

    Attributes:
        name: layer name.
        size: neurons :math:`H_l`.
        fan_in: inputs per neuron (:math:`F` for layer 0, whose input is computed on the host).
        spikes: mean spikes per node over the ``T`` steps.
        firing_rate: spikes / (size · T).
        synaptic_ops: mean synaptic operations per node into this layer.
        active_updates: mean active neuron updates per node.
        neuron_updates: size · T.
    """

    name: str
    size: int
    fan_in: int
    spikes: float
    firing_rate: float
    synaptic_ops: float
    active_updates: float
    neuron_updates: int


@dataclass
class Activity:
    """Activity of the whole encoder on a data set."""

    time_steps: int
    in_features: int
    layers: list[LayerActivity]
    nodes_per_image: float
    edges_per_image: float
    nodes_measured: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = [asdict(layer) for layer in self.layers]
        return d


def activity_from_spikes(
    spikes: list[np.ndarray],
    in_features: int,
    active: list[np.ndarray] | None = None,
    nodes_per_image: float = 1.0,
    edges_per_image: float = 0.0,
) -> Activity:
    """Summarise per-layer activity.

    Args:
        spikes: per layer ``T×N×H_l`` (0/1).
        in_features: ``F``.
        active: per layer ``T×N×H_l`` booleans (neuron state non-zero after the update);
            ``None`` counts every update as active.
        nodes_per_image, edges_per_image: graph sizes for the per-image totals.
    """
    t_steps, n_nodes = spikes[0].shape[:2]
    layers = []
    prev_spikes = None
    for li, s in enumerate(spikes):
        size = s.shape[-1]
        total = float(np.asarray(s, dtype=np.float64).sum()) / max(n_nodes, 1)
        if li == 0:
            synops = float(size * t_steps)
            fan_in = in_features
        else:
            synops = prev_spikes * size
            fan_in = spikes[li - 1].shape[-1]
        act = (
            float(np.asarray(active[li]).sum()) / max(n_nodes, 1)
            if active is not None
            else float(size * t_steps)
        )
        layers.append(
            LayerActivity(
                layer_name(li),
                size,
                fan_in,
                total,
                total / (size * t_steps),
                synops,
                act,
                size * t_steps,
            )
        )
        prev_spikes = total
    return Activity(t_steps, in_features, layers, nodes_per_image, edges_per_image, n_nodes)


def gatv2_macs(
    num_nodes: float, num_edges: float, dim_in: int, dim: int, layers: int, edge_dim: int
) -> float:
    """Dominant MACs of ``layers`` GATv2 layers (PyG ``GATv2Conv``, heads·channels = ``dim``).

    Per layer: source/target projections ``2·N·d_in·D``, edge-attribute projection ``E·G·D``,
    attention logits ``E·D`` and weighted aggregation ``E·D``; ``d_in = D`` after layer 1.
    """
    total = 0.0
    d_in = dim_in
    for _ in range(layers):
        total += 2 * num_nodes * d_in * dim + num_edges * (edge_dim + 2) * dim
        d_in = dim
    return total


def estimate_energy(
    activity: Activity,
    cmos: EnergyProfile,
    loihi: EnergyProfile | None = None,
    gat_macs_per_image: float | None = None,
) -> dict[str, Any]:
    """Energy per node and per image (pJ) for each model; see the module docstring."""
    layers = activity.layers
    synops = sum(layer.synaptic_ops for layer in layers)
    spikes = sum(layer.spikes for layer in layers)
    updates = sum(layer.neuron_updates for layer in layers)
    active = sum(layer.active_updates for layer in layers)
    host_macs = activity.in_features * layers[0].size
    ann_macs = sum(layer.fan_in * layer.size for layer in layers)
    npi = activity.nodes_per_image

    per_node: dict[str, float] = {}
    per_node["snn_cmos45nm"] = synops * cmos["ac"] + host_macs * cmos["mac"]
    per_node["ann_cmos45nm"] = ann_macs * cmos["mac"]
    breakdown: dict[str, Any] = {
        "snn_cmos45nm": {
            "synaptic_ops_x_AC": synops * cmos["ac"],
            "host_projection_MACs_x_MAC": host_macs * cmos["mac"],
        }
    }
    if loihi is not None:
        parts = {
            "synaptic_ops": synops * loihi["synaptic_spike_op"],
            "neuron_updates_active": active * loihi["neuron_update_active"],
            "neuron_updates_inactive": (updates - active) * loihi["neuron_update_inactive"],
            "spikes_within_tile": spikes * loihi["spike_within_tile"],
            "host_projection_MACs_x_MAC_cmos45nm": host_macs * cmos["mac"],
        }
        per_node["snn_loihi1"] = float(sum(parts.values()))
        breakdown["snn_loihi1"] = parts
    per_image = {k: v * npi for k, v in per_node.items()}
    if gat_macs_per_image is not None:
        per_image["gat_host_cmos45nm"] = gat_macs_per_image * cmos["mac"]
    ratios: dict[str, float] = {}
    if per_node["snn_cmos45nm"] > 0:
        ratios["ann_over_snn_cmos45nm"] = per_node["ann_cmos45nm"] / per_node["snn_cmos45nm"]
    if "snn_loihi1" in per_node and per_node["snn_loihi1"] > 0:
        ratios["ann_cmos45nm_over_snn_loihi1"] = per_node["ann_cmos45nm"] / per_node["snn_loihi1"]
    if gat_macs_per_image is not None and per_image["snn_cmos45nm"] > 0:
        ratios["gat_over_snn_cmos45nm"] = per_image["gat_host_cmos45nm"] / per_image["snn_cmos45nm"]
    return {
        "note": ESTIMATE_NOTE,
        "units": "pJ",
        "counts_per_node": {
            "synaptic_ops": synops,
            "spikes": spikes,
            "neuron_updates": updates,
            "neuron_updates_active": active,
            "host_projection_macs": host_macs,
            "ann_macs": ann_macs,
        },
        "gat_macs_per_image": gat_macs_per_image,
        "energy_per_node_pJ": per_node,
        "energy_per_image_pJ": per_image,
        "breakdown_per_node_pJ": breakdown,
        "ratios": ratios,
        "profiles": {p.name: p.to_dict() for p in (cmos, loihi) if p is not None},
    }
