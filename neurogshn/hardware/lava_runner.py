"""Run an exported ``.net`` network in Lava's bit-accurate CPU simulation.

Nodes are streamed through one Lava network: node ``k``'s graded input is sent during steps
``kT … kT+T-1`` and every layer resets its ``u, v`` at the first step of each node's window
(netx ``reset_interval=T``; ``reset_offset`` aligned with the one-step synaptic delay of each
``Dense`` block). Layer ``j`` (0-based) therefore emits node ``k``'s step ``t`` at the Lava
sink index ``kT + t + j + 1``; :func:`run_lava` removes those offsets and returns the spikes in
the same aligned ``T×N×H`` layout as the Norse encoder and the fixed-point reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neurogshn.hardware.quantize import INPUT_MESSAGE_BITS
from neurogshn.lava_compat import lava_module, netx


def run_lava(
    net_path: str | Path, a0: np.ndarray, time_steps: int, select_tag: str = "fixed_pt"
) -> list[np.ndarray]:
    """Run ``a0`` (``N×H_0`` graded input messages) through the ``.net`` network in Lava.

    Args:
        net_path: the ``.net`` file (:func:`neurogshn.hardware.netx_export.write_netx`).
        a0: integer input messages per node, held for ``time_steps`` steps.
        time_steps: ``T``.
        select_tag: Lava process-model tag (``"fixed_pt"`` = bit-accurate Loihi models).

    Returns:
        per layer, spikes ``T×N×H_l`` (bool).
    """
    hdf5 = netx().hdf5
    source_mod = lava_module("lava.proc.io.source")
    sink_mod = lava_module("lava.proc.io.sink")
    run_cfg = lava_module("lava.magma.core.run_configs")
    run_cond = lava_module("lava.magma.core.run_conditions")

    a0 = np.asarray(a0, dtype=np.int32)
    n_nodes, h0 = a0.shape
    steps_t = int(time_steps)
    net = hdf5.Network(
        net_config=str(net_path),
        input_message_bits=INPUT_MESSAGE_BITS,
        reset_interval=steps_t,
        reset_offset=1,
    )
    n_layers = len(net.layers)
    total = n_nodes * steps_t + n_layers + 1
    data = np.zeros((h0, total), dtype=np.int32)
    for k in range(n_nodes):
        data[:, k * steps_t : (k + 1) * steps_t] = a0[k][:, None]
    source = source_mod.RingBuffer(data=data)
    source.s_out.connect(net.inp)
    sinks = []
    for layer in net.layers:
        sink = sink_mod.RingBuffer(shape=layer.out.shape, buffer=total)
        layer.out.connect(sink.a_in)
        sinks.append(sink)
    try:
        net.run(
            condition=run_cond.RunSteps(num_steps=total),
            run_cfg=run_cfg.Loihi2SimCfg(select_tag=select_tag),
        )
        raw = [sink.data.get() for sink in sinks]
    finally:
        net.stop()
    out = []
    for j, rec in enumerate(raw):
        idx = np.arange(n_nodes)[None, :] * steps_t + np.arange(steps_t)[:, None] + j + 1  # T×N
        out.append(rec[:, idx].transpose(1, 2, 0) > 0)  # H×T×N → T×N×H
    return out
