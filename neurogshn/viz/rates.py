r"""Firing-rate statistics and plots: rate heatmaps (nodes × neurons) and rate histograms.

The firing rate of neuron ``d`` of node ``n`` over ``T`` steps is
:math:`r_{n,d} = \frac{1}{T}\sum_t z_{t,n,d} \in \{0, 1/T, …, 1\}` spikes per step.
A neuron is *silent* when it never fires (:math:`r_{n,d} = 0`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from neurogshn.utils.names import layer_name
from neurogshn.viz.style import (
    RATE_CMAP,
    RATE_LABEL,
    check_time_first,
    new_axes,
    new_figure,
    to_numpy,
)


def firing_rates(layer_spikes: Any) -> np.ndarray:
    """Per node and neuron firing rate (mean over time).

    Shapes:
        - layer_spikes: ``T×N×D`` (or ``T×M``) → ``N×D`` (or ``M``)
    """
    z = to_numpy(layer_spikes, "layer_spikes").astype(np.float64)
    check_time_first(z, "layer_spikes", (2, 3))
    if z.shape[0] == 0:
        raise ValueError("layer_spikes has no time steps")
    return z.mean(axis=0)


@dataclass(frozen=True)
class RateSummary:
    """Rate statistics of one layer.

    Args:
        mean_rate: mean firing rate over nodes, neurons and steps (spikes/step).
        silent_fraction: fraction of (node, neuron) pairs that never fire.
        saturated_fraction: fraction that fire at every step.
        time_steps: ``T``.
        spikes: total spike count.
    """

    mean_rate: float
    silent_fraction: float
    saturated_fraction: float
    time_steps: int
    spikes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rate_summary(layer_spikes: Any) -> RateSummary:
    """Summarise one layer's spikes (``T×N×D``)."""
    z = to_numpy(layer_spikes, "layer_spikes").astype(np.float64)
    rates = firing_rates(z)
    if rates.size == 0:
        return RateSummary(0.0, 0.0, 0.0, int(z.shape[0]), 0)
    return RateSummary(
        mean_rate=float(rates.mean()),
        silent_fraction=float((rates == 0).mean()),
        saturated_fraction=float((rates == 1).mean()),
        time_steps=int(z.shape[0]),
        spikes=int(z.sum()),
    )


def plot_rate_heatmap(
    layer_spikes: Any | None = None,
    *,
    rates: Any | None = None,
    node_names: Sequence[str] | None = None,
    layer_name: str = "layer",
    vmax: float = 1.0,
    ax: Axes | None = None,
    figsize: tuple[float, float] = (7.0, 4.0),
) -> Figure:
    """Heatmap of firing rates, one row per node and one column per neuron.

    Args:
        layer_spikes: one layer's spikes (time first); give this or ``rates``.
        rates: precomputed rates, ``N×D`` spikes/step.
        node_names: row labels (default ``"node {i}"``; labelled when ≤ 40 rows).
        layer_name: layer name for the title.
        vmax: top of the colour scale (rates lie in [0, 1]).
        ax: axes to draw into.
        figsize: size of a new figure.

    Shapes:
        - layer_spikes: ``T×N×D``; rates: ``N×D``. The image shown is exactly ``rates``.
    """
    if (layer_spikes is None) == (rates is None):
        raise ValueError("give exactly one of layer_spikes and rates")
    r = firing_rates(layer_spikes) if rates is None else to_numpy(rates, "rates").astype(float)
    if r.ndim != 2:
        raise ValueError(f"rates must be N×D (nodes × neurons); got shape {r.shape}")
    fig, ax = new_axes(ax, figsize)
    im = ax.imshow(r, aspect="auto", cmap=RATE_CMAP, vmin=0.0, vmax=vmax, interpolation="nearest")
    cbar = fig.colorbar(im, ax=ax)
    cbar.set_label(RATE_LABEL)
    ax.set_xlabel("neuron index")
    ax.set_ylabel("node")
    n = r.shape[0]
    if n <= 40:
        names = list(node_names) if node_names is not None else [f"node {i}" for i in range(n)]
        if len(names) != n:
            raise ValueError(f"node_names has {len(names)} entries for {n} nodes")
        ax.set_yticks(range(n), labels=names, fontsize="small" if n > 12 else None)
    silent = float((r == 0).mean()) if r.size else 0.0
    mean = float(r.mean()) if r.size else 0.0
    ax.set_title(
        f"{layer_name}: firing rate per node and neuron\n"
        f"mean {mean:.3f} spikes/step · {100 * silent:.1f}% silent"
    )
    return fig


def plot_rate_histogram(
    spikes: Any | Sequence[Any],
    *,
    layer_names: Sequence[str] | None = None,
    ax: Axes | None = None,
    fig: Figure | None = None,
    figsize: tuple[float, float] = (6.0, 3.6),
) -> Figure:
    """Histogram of per-(node, neuron) firing rates, one bar series per layer.

    With ``T`` steps a rate can only be ``k/T``; the bins are centred on those values. The
    legend gives, per layer, the mean rate and the fraction of silent neurons.

    Args:
        spikes: one layer's spikes ``T×N×D`` or a list of layers (``ImageEncoding.spikes``).
        layer_names: legend names (default ``"layer0"``, ``"layer1"`` …).
        ax: axes to draw into (all layers on it); else a new figure (or ``fig``).
        fig: figure to draw into when ``ax`` is ``None``.
        figsize: size of a new figure.

    Shapes:
        - spikes: ``T×N×D`` or list of ``T×N×D_l`` (same ``T``).

    Returns:
        The figure; the bar heights are the fraction of (node, neuron) pairs per rate value.
    """
    layers = [spikes] if hasattr(spikes, "shape") else list(spikes)
    if not layers:
        raise ValueError("no layers to plot")
    arrays = [to_numpy(s, f"spikes[{i}]") for i, s in enumerate(layers)]
    for i, a in enumerate(arrays):
        check_time_first(a, f"spikes[{i}]", (3,))
    steps = {a.shape[0] for a in arrays}
    if len(steps) != 1:
        raise ValueError(f"layers have different numbers of time steps: {sorted(steps)}")
    (t,) = steps
    names = (
        list(layer_names)
        if layer_names is not None
        else [layer_name(i) for i in range(len(arrays))]
    )
    if len(names) != len(arrays):
        raise ValueError(f"layer_names has {len(names)} entries for {len(arrays)} layers")
    if ax is None:
        fig = new_figure(fig, figsize)
        ax = fig.add_subplot()
    else:
        fig = ax.get_figure(root=True)
    values = np.arange(t + 1) / t
    width = 0.8 / t / len(arrays)
    for i, (a, name) in enumerate(zip(arrays, names)):
        summary = rate_summary(a)
        counts = np.rint(firing_rates(a).ravel() * t).astype(int)
        frac = np.bincount(counts, minlength=t + 1) / max(counts.size, 1)
        offset = (i - (len(arrays) - 1) / 2) * width
        ax.bar(
            values + offset,
            frac,
            width=width,
            label=(
                f"{name}: mean {summary.mean_rate:.3f} spikes/step, "
                f"{100 * summary.silent_fraction:.1f}% silent"
            ),
        )
    ax.set_xlabel(RATE_LABEL)
    ax.set_ylabel("fraction of neurons\n(node × neuron pairs)")
    ax.set_xlim(-0.6 / t, 1 + 0.6 / t)
    if t <= 10:
        ax.set_xticks(values, labels=[f"{k}/{t}" for k in range(t + 1)])
    ax.legend(fontsize="small", loc="best")
    ax.set_title(f"firing-rate distribution ({t} time steps)")
    return fig
