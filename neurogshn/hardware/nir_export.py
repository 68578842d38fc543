r"""NIR export of the (float) spiking encoder.

Graph: ``input → layer0 (Affine W0,b0) → lif0 (CubaLIF) → layer1 (Linear W1) → lif1 → … →
output``. Every neuron parameter is a per-neuron array of shape ``(n,)`` (``nir.read`` rejects
scalars).

Exactness. Norse's importer (``norse.torch.from_nir(graph, dt=dt)``) builds a ``CubaLIF`` as
``w_in · x`` → leaky integrator ``s ← s + dt·τ_syn⁻¹(−s + w_in x)`` → ``r · s`` → LIF box
``v ← v + dt·τ_mem⁻¹(−v + r s)``. With ``tau_syn = 1/τ_syn⁻¹``, ``w_in = 1/(dt·τ_syn⁻¹)``,
``r = 1`` this gives ``s_t = (1 − δ_s) s_{t−1} + c_t``, which is exactly the post-jump
current :math:`i'_t` of the encoder's ``lif_feed_forward_step`` (see
:mod:`neurogshn.hardware.quantize`), so the imported network reproduces the encoder's spikes
(up to float rounding order). In NIR's continuous-time reading, ``w_in = τ_syn/dt`` is the gain
that turns an input of area ``c·dt`` into a current jump ``c``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from neurogshn.errors import ExportError
from neurogshn.utils.io import atomic_path


def encoder_to_nir(encoder: Any) -> Any:
    """Build the ``nir.NIRGraph`` of a :class:`~neurogshn.model.spiking.SpikingEncoder`."""
    import nir

    p = encoder.neuron
    nodes: dict[str, Any] = {
        "input": nir.Input(input_type={"input": np.array([encoder.in_features])})
    }
    edges: list[tuple[str, str]] = []
    prev = "input"
    for i, lin in enumerate(encoder.layers):
        w = lin.weight.detach().cpu().numpy().astype(np.float32)
        n = w.shape[0]
        if lin.bias is not None:
            syn: Any = nir.Affine(weight=w, bias=lin.bias.detach().cpu().numpy().astype(np.float32))
        else:
            syn = nir.Linear(weight=w)
        ones = np.ones(n, dtype=np.float32)
        lif = nir.CubaLIF(
            tau_syn=ones / np.float32(p.tau_syn_inv),
            tau_mem=ones / np.float32(p.tau_mem_inv),
            r=ones.copy(),
            v_leak=np.zeros(n, np.float32),
            v_threshold=ones * np.float32(p.v_th),
            v_reset=np.zeros(n, np.float32),
            w_in=ones / np.float32(p.syn_decay),
        )
        nodes[f"layer{i}"] = syn
        nodes[f"lif{i}"] = lif
        edges += [(prev, f"layer{i}"), (f"layer{i}", f"lif{i}")]
        prev = f"lif{i}"
    nodes["output"] = nir.Output(output_type={"output": np.array([encoder.out_features])})
    edges.append((prev, "output"))
    return nir.NIRGraph(
        nodes=nodes,
        edges=edges,
        metadata={
            "producer": "neurogshn",
            "dt": float(p.dt),
            "time_steps": int(encoder.time_steps),
            "input_encoding": "constant current: the input x is presented at every step",
            "import": "norse.torch.from_nir(graph, dt=dt)",
        },
    )


def write_nir(encoder: Any, path: str | Path) -> Path:
    """Write the encoder's NIR graph (HDF5) atomically; read back to check it."""
    import nir

    path = Path(path)
    graph = encoder_to_nir(encoder)
    with atomic_path(path) as tmp:
        nir.write(str(tmp), graph)
        try:
            nir.read(str(tmp))
        except Exception as exc:  # nir raises assorted errors on malformed graphs
            raise ExportError(f"{path}: the written NIR graph does not read back ({exc})") from exc
    return path


def run_nir_norse(graph_or_path: Any, x: Any, time_steps: int, dt: float) -> list[Any]:
    """Run a NIR graph through ``norse.torch.from_nir`` for ``time_steps`` with constant input.

    Returns:
        the output spikes per step, a ``T×N×H`` tensor.
    """
    import nir
    import norse.torch
    import torch

    graph = nir.read(str(graph_or_path)) if isinstance(graph_or_path, str | Path) else graph_or_path
    module = norse.torch.from_nir(graph, dt=dt)
    state = None
    outs = []
    with torch.no_grad():
        for _ in range(time_steps):
            out, state = module(x, state)
            outs.append(out)
    return torch.stack(outs)
