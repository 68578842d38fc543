r"""NIR export of the (float) spiking encoder, in NIR's continuous-time reading.

Graph: ``input → layer0 (Affine W0,b0) → lif0 (CubaLIF) → layer1 (Linear W1) → lif1 → … →
output``. Every neuron parameter is a per-neuron array of shape ``(n,)`` (``nir.read`` rejects
scalars).

NIR's CubaLIF is the pair of ODEs

.. math::
    \tau_{syn}\,\dot I = -I + w_{in}\,x, \qquad
    \tau_{mem}\,\dot v = (v_{leak} - v) + r\,I,

with times in seconds. A consumer that integrates them by forward Euler with step ``dt``
(Norse's ``from_nir(graph, dt=dt)``; snnTorch, which assumes ``dt = 1e-4`` s) gets

.. math::
    I_t = (1 - \tfrac{dt}{\tau_{syn}})\,I_{t-1} + \tfrac{dt\,w_{in}}{\tau_{syn}}\,x_t, \qquad
    v_t = (1 - \tfrac{dt}{\tau_{mem}})\,v_{t-1} + \tfrac{dt\,r}{\tau_{mem}}\,I_t.

The encoder's own step (Norse ``lif_feed_forward_step`` with decays :math:`\delta_s, \delta_m`,
see :mod:`neurogshn.hardware.quantize`) is :math:`i'_t = (1-\delta_s) i'_{t-1} + c_t`,
:math:`v'_t = (1-\delta_m) v_{t-1} + \delta_m i'_t`, spike when :math:`v'_t > v_{th}`, reset to 0.
Writing, for a chosen ``dt``,

.. math::
    \tau_{syn} = dt/\delta_s,\quad \tau_{mem} = dt/\delta_m,\quad w_{in} = \tau_{syn}/dt,\quad
    r = \tau_{mem}/dt,\quad v_{th}^{NIR} = v_{th}/\delta_m,\quad v_{leak} = v_{reset} = 0

makes the Euler reading exactly the encoder with :math:`I = i'` and :math:`v = v'/\delta_m`
(unit input and membrane gains, which is also what snnTorch's importer requires:
``r = tau_mem/dt`` and ``w_in·dt/tau_syn = 1``). The input ``x`` of layer 0 is a constant
current presented at every one of the ``T`` steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from neurogshn.errors import ExportError
from neurogshn.utils.io import atomic_path
from neurogshn.utils.names import layer_name

#: The default NIR time step in seconds: what snnTorch's importer assumes.
DEFAULT_NIR_DT = 1e-4


def encoder_to_nir(encoder: Any, dt: float = DEFAULT_NIR_DT, num_layers: int | None = None) -> Any:
    """Build the ``nir.NIRGraph`` of a :class:`~neurogshn.model.spiking.SpikingEncoder`.

    Args:
        encoder: the spiking encoder.
        dt: the step (seconds) at which the continuous-time graph reproduces the encoder.
        num_layers: export only the first ``num_layers`` spiking layers (the graph's output is
            then that layer's spikes); default all.
    """
    import nir

    if not dt > 0:
        raise ExportError(f"NIR dt must be a positive number of seconds, got {dt}")
    n_layers = len(encoder.layers) if num_layers is None else int(num_layers)
    if not 1 <= n_layers <= len(encoder.layers):
        raise ExportError(f"num_layers must be in 1…{len(encoder.layers)}, got {num_layers}")
    p = encoder.neuron
    d_syn, d_mem = float(p.syn_decay), float(p.mem_decay)
    nodes: dict[str, Any] = {
        "input": nir.Input(input_type={"input": np.array([encoder.in_features])})
    }
    edges: list[tuple[str, str]] = []
    prev = "input"
    for i, lin in enumerate(encoder.layers[:n_layers]):
        w = lin.weight.detach().cpu().numpy().astype(np.float32)
        n = w.shape[0]
        if lin.bias is not None:
            syn: Any = nir.Affine(weight=w, bias=lin.bias.detach().cpu().numpy().astype(np.float32))
        else:
            syn = nir.Linear(weight=w)
        ones = np.ones(n, dtype=np.float32)
        tau_syn, tau_mem = dt / d_syn, dt / d_mem
        lif = nir.CubaLIF(
            tau_syn=ones * np.float32(tau_syn),
            tau_mem=ones * np.float32(tau_mem),
            r=ones * np.float32(tau_mem / dt),
            v_leak=np.zeros(n, np.float32),
            v_threshold=ones * np.float32(p.v_th / d_mem),
            v_reset=np.zeros(n, np.float32),
            w_in=ones * np.float32(tau_syn / dt),
        )
        nodes[layer_name(i)] = syn
        nodes[f"lif{i}"] = lif
        edges += [(prev, layer_name(i)), (layer_name(i), f"lif{i}")]
        prev = f"lif{i}"
    out_features = encoder.layers[n_layers - 1].out_features
    nodes["output"] = nir.Output(output_type={"output": np.array([out_features])})
    edges.append((prev, "output"))
    return nir.NIRGraph(
        nodes=nodes,
        edges=edges,
        metadata={
            "producer": "neurogshn",
            "dt": float(dt),
            "time_steps": int(encoder.time_steps),
            "input_encoding": "constant current: the input x is presented at every step",
            "reading": "forward Euler at dt reproduces the encoder spike for spike",
        },
    )


def write_nir(encoder: Any, path: str | Path, dt: float = DEFAULT_NIR_DT) -> Path:
    """Write the encoder's NIR graph (HDF5) atomically; read back to check it."""
    import nir

    path = Path(path)
    graph = encoder_to_nir(encoder, dt)
    with atomic_path(path) as tmp:
        nir.write(str(tmp), graph)
        try:
            nir.read(str(tmp))
        except Exception as exc:  # nir raises assorted errors on malformed graphs
            raise ExportError(f"{path}: the written NIR graph does not read back ({exc})") from exc
    return path
