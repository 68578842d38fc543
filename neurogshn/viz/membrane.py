r"""Membrane-potential traces of chosen neurons, with the threshold and the spikes.

The traces come from the spiking encoder run with ``record_voltages=True``
(:class:`neurogshn.model.spiking.SpikingEncoderOutput.voltages`): one ``T×N×D`` tensor per
layer holding :math:`v_t` *after* the reset, so at a spike step the recorded value is
:math:`v_{reset} = 0`. The plot draws a vertical stroke up to a spike mark above the threshold
line :math:`v_{th}` and back down to the recorded value at each spike step (integrate → fire →
reset); the dots are the recorded values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from neurogshn.viz.style import TIME_LABEL, check_time_first, new_figure, to_numpy


def plot_membrane_traces(
    voltages: Any,
    spikes: Any,
    neurons: Sequence[int | tuple[int, int]],
    *,
    threshold: float = 1.0,
    layer_name: str = "layer",
    fig: Figure | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """One panel per neuron: membrane potential over time, threshold line, spike marks.

    Args:
        voltages: membrane potentials, time first.
        spikes: the same layer's spikes (same shape).
        neurons: neurons to show: ``(node, neuron)`` pairs for ``T×N×D`` input, or column
            indices for ``T×M`` input.
        threshold: firing threshold :math:`v_{th}` (``LIFNeuronParameters.v_th``).
        layer_name: layer name for the title.
        fig: figure to draw into (its existing axes are kept; new ones are added).
        figsize: size of a new figure (default grows with the number of neurons).

    Shapes:
        - voltages, spikes: ``T×N×D`` or ``T×M``.

    Returns:
        The figure. In each panel the spike marks are one scatter collection with one
        ``v`` marker per spike, placed just above the threshold.
    """
    v = to_numpy(voltages, "voltages").astype(np.float64)
    z = to_numpy(spikes, "spikes")
    check_time_first(v, "voltages", (2, 3))
    if z.shape != v.shape:
        raise ValueError(f"spikes shape {z.shape} differs from voltages shape {v.shape}")
    if not neurons:
        raise ValueError("choose at least one neuron")
    traces, names = [], []
    for item in neurons:
        if v.ndim == 3:
            if not (isinstance(item, tuple | list) and len(item) == 2):
                raise ValueError("for T×N×D input, neurons are (node, neuron) pairs")
            n, d = int(item[0]), int(item[1])
            if not (0 <= n < v.shape[1] and 0 <= d < v.shape[2]):
                raise IndexError(f"neuron {(n, d)} out of range for shape {v.shape[1:]}")
            traces.append((v[:, n, d], z[:, n, d]))
            names.append(f"node {n}, neuron {d}")
        else:
            m = int(item)  # type: ignore[arg-type]
            if not 0 <= m < v.shape[1]:
                raise IndexError(f"neuron {m} out of range: {v.shape[1]} neurons")
            traces.append((v[:, m], z[:, m]))
            names.append(f"neuron {m}")
    steps = v.shape[0]
    fig = new_figure(fig, figsize or (6.5, 1.2 + 1.4 * len(traces)))
    axes = fig.subplots(len(traces), 1, sharex=True, squeeze=False)[:, 0]
    t = np.arange(steps)
    top = max(threshold * 1.25, float(np.nanmax(v)) * 1.1 if v.size else threshold)
    if fig is not None and fig.get_layout_engine() is None:
        fig.set_layout_engine("constrained")
    peak = threshold * 1.12
    for ax, (trace, spk), name in zip(axes, traces, names):
        ts = np.flatnonzero(spk > 0)
        # Display path: at a spike step the line rises to the spike peak, then drops to the
        # recorded (reset) value, so the trace reads as integrate → fire → reset.
        xs, ys = [], []
        for k in range(steps):
            if spk[k] > 0:
                xs += [k, k]
                ys += [peak, trace[k]]
            else:
                xs.append(k)
                ys.append(trace[k])
        ax.plot(xs, ys, "-", lw=1.4, color="#1f77b4", label="membrane potential v")
        ax.plot(t, trace, "o", ms=3, color="#1f77b4")
        ax.axhline(
            threshold, color="#d62728", ls="--", lw=1.0, label=f"threshold v_th = {threshold:g}"
        )
        ax.scatter(
            ts,
            np.full(ts.shape, peak),
            marker="v",
            s=36,
            color="#d62728",
            zorder=3,
            label="spike (then v reset to 0)",
        )
        bottom = min(0.0, float(trace.min()) * 1.1) if trace.size else 0.0
        ax.set_ylim(bottom - 0.05 * threshold, top)
        ax.set_ylabel("v (a.u.)")
        ax.set_title(f"{name} · {len(ts)} spikes in {steps} steps", fontsize="medium", loc="left")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize="small")
    axes[-1].set_xlabel(TIME_LABEL)
    if steps <= 20:
        axes[-1].set_xticks(range(steps))
    fig.suptitle(f"{layer_name}: membrane potential of chosen neurons")
    return fig
