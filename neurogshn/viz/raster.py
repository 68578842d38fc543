r"""Spike rasters (time × neuron) of the spiking encoder's layers.

The spiking encoder returns one time-first tensor per layer, ``T×N×D_l`` (``T`` simulation
steps, ``N`` nodes of the batched scene graphs, ``D_l`` neurons of layer ``l``); every node runs
its own copy of the layer's ``D_l`` neurons. The rasters here draw exactly one mark (a short
bar) per spike:

- :func:`plot_spike_raster`: any ``T×M`` spike matrix (the primitive the others call);
- :func:`plot_node_raster`: one node's neurons of one layer, ``T×D``;
- :func:`plot_image_raster`: every node of one image (one graph of a batch), neurons laid out
  node by node with separators and node labels;
- :func:`plot_layer_raster`: every node of the batch (or a chosen subset) of one layer.

The title reports the mean firing rate :math:`\bar r = \frac{1}{T M}\sum_{t,m} z_{t,m}` in
spikes per step (per neuron), and the spike count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from neurogshn.viz.style import (
    HIGHLIGHT_COLOR,
    SPIKE_COLOR,
    TIME_LABEL,
    check_time_first,
    new_axes,
    to_numpy,
)


def _binary(spikes: Any, name: str) -> np.ndarray:
    arr = to_numpy(spikes, name).astype(np.float64)
    if arr.size and not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"{name} must contain only 0 and 1 (spikes); got other values")
    return arr > 0


def _spike_lines(
    ax: Axes, t: np.ndarray, m: np.ndarray, steps: int, rows: int, color: str
) -> LineCollection:
    """One vertical bar per spike ``(t, m)``: 84% of a neuron row tall, 1.5–3.5 points wide.

    Dense rasters (rows under ~3 points tall) are drawn without antialiasing so that each
    spike stays a crisp dark pixel row instead of a faint grey smear.
    """
    fig = ax.get_figure(root=True)
    bbox = ax.get_position()
    row_pt = bbox.height * fig.get_figheight() * 72.0 / max(rows, 1)
    col_pt = bbox.width * fig.get_figwidth() * 72.0 / max(steps, 1)
    segs = np.stack(
        [np.stack([t, m - 0.42], axis=1), np.stack([t, m + 0.42], axis=1)], axis=1
    ).astype(np.float64)
    lines = LineCollection(
        segs,
        colors=color,
        linewidths=float(np.clip(0.2 * col_pt, 1.5, 3.5)),
        antialiaseds=row_pt >= 3.0,
        capstyle="butt",
    )
    ax.add_collection(lines)
    return lines


def plot_spike_raster(
    spikes: Any,
    *,
    ax: Axes | None = None,
    highlight: Sequence[int] | None = None,
    title: str | None = None,
    ylabel: str = "neuron index",
    separators: Sequence[float] | None = None,
    group_ticks: Sequence[float] | None = None,
    group_labels: Sequence[str] | None = None,
    highlight_label: str | None = None,
    figsize: tuple[float, float] = (6.0, 4.0),
) -> Figure:
    r"""Draw a ``T×M`` spike matrix as a raster: one ``|`` mark per spike.

    Args:
        spikes: spikes, time first, values in {0, 1} (tensor or array).
        ax: axes to draw into; a new figure when ``None``.
        highlight: row indices (neurons) whose spikes are drawn in red on a shaded band.
        title: axes title; default reports the mean rate and spike count.
        ylabel: label of the neuron axis.
        separators: row positions (between rows, e.g. ``63.5``) where a horizontal line
            separates groups (nodes).
        group_ticks, group_labels: y tick positions and labels naming the groups.
        highlight_label: legend text for the highlighted neurons.
        figsize: size of a new figure, inches.

    Shapes:
        - spikes: ``T×M``

    Returns:
        The figure. Spikes are drawn as at most two ``LineCollection`` s (ordinary and
        highlighted) holding one vertical bar centred on ``(t, m)`` per spike, so the number
        of marks equals ``spikes.sum()``.
    """
    z = _binary(spikes, "spikes")
    check_time_first(z, "spikes", (2,))
    steps, rows = z.shape
    fig, ax = new_axes(ax, figsize)
    hl = np.zeros(rows, dtype=bool)
    if highlight is not None:
        idx = np.asarray(list(highlight), dtype=int)
        if idx.size and (idx.min() < 0 or idx.max() >= rows):
            raise ValueError(f"highlight indices must lie in [0, {rows}); got {idx.tolist()}")
        hl[idx] = True
    t, m = np.nonzero(z)
    is_hl = hl[m]
    _spike_lines(ax, t[~is_hl], m[~is_hl], steps, rows, SPIKE_COLOR)
    if hl.any():
        for row in np.flatnonzero(hl):
            ax.axhspan(row - 0.5, row + 0.5, color=HIGHLIGHT_COLOR, alpha=0.12, lw=0)
        _spike_lines(ax, t[is_hl], m[is_hl], steps, rows, HIGHLIGHT_COLOR)
        label = highlight_label or f"highlighted neurons ({int(hl.sum())})"
        ax.legend(
            handles=[Line2D([], [], color=HIGHLIGHT_COLOR, marker="|", ls="", ms=10, mew=2)],
            labels=[label],
            loc="upper right",
            fontsize="small",
            framealpha=0.9,
        )
    for y in separators or ():
        ax.axhline(y, color="0.7", lw=0.7)
    ax.set_xlim(-0.5, steps - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)  # neuron 0 at the top, like a matrix
    ax.set_xlabel(TIME_LABEL)
    ax.set_ylabel(ylabel)
    if steps <= 20:
        ax.set_xticks(range(steps))
    if group_ticks is not None:
        ax.set_yticks(list(group_ticks), labels=list(group_labels or []), fontsize="small")
    rate = float(z.mean()) if z.size else 0.0
    ax.set_title(title or f"mean rate {rate:.3f} spikes/step · {int(z.sum())} spikes")
    return fig


def _rate_text(z: np.ndarray) -> str:
    rate = float(z.mean()) if z.size else 0.0
    return f"rate {rate:.3f} spikes/step ({int(z.sum())} spikes)"


def plot_node_raster(
    layer_spikes: Any,
    node: int,
    *,
    layer_name: str = "layer",
    node_name: str | None = None,
    highlight: Sequence[int] | None = None,
    ax: Axes | None = None,
    figsize: tuple[float, float] = (6.0, 4.0),
) -> Figure:
    """Raster of one node's neurons in one layer.

    Args:
        layer_spikes: one layer's spikes, time first.
        node: node index (row of the batched graph; node 0 of each graph is the global node).
        layer_name: layer name for the title, e.g. ``"layer0"``.
        node_name: node name for the title (default ``"node {node}"``).
        highlight: neuron indices (``0…D-1``) to highlight.
        ax: axes to draw into.
        figsize: size of a new figure.

    Shapes:
        - layer_spikes: ``T×N×D``; the raster shows ``T×D``.
    """
    z = _binary(layer_spikes, "layer_spikes")
    check_time_first(z, "layer_spikes", (3,))
    if not 0 <= node < z.shape[1]:
        raise IndexError(f"node {node} out of range: the layer has {z.shape[1]} nodes")
    sub = z[:, node, :]
    name = node_name or f"node {node}"
    return plot_spike_raster(
        sub,
        ax=ax,
        highlight=highlight,
        title=f"{layer_name} · {name}\n{_rate_text(sub)}",
        ylabel=f"neuron index (of {sub.shape[1]})",
        figsize=figsize,
    )


def plot_layer_raster(
    layer_spikes: Any,
    *,
    nodes: Sequence[int] | None = None,
    node_names: Sequence[str] | None = None,
    layer_name: str = "layer",
    title_prefix: str | None = None,
    highlight: Sequence[int] | None = None,
    ax: Axes | None = None,
    figsize: tuple[float, float] = (7.0, 6.0),
) -> Figure:
    """Raster of one layer for several nodes, neurons laid out node by node.

    Row ``k·D + d`` is neuron ``d`` of the ``k``-th selected node; grey lines separate nodes
    and the y ticks name them.

    Args:
        layer_spikes: one layer's spikes, time first.
        nodes: node indices to show, in this order (default: all ``N``).
        node_names: one label per shown node (default ``"node {i}"``).
        layer_name: layer name for the title.
        title_prefix: text placed before the layer name in the title (e.g. the image id).
        highlight: neuron indices (``0…D-1``) to highlight in every shown node.
        ax: axes to draw into.
        figsize: size of a new figure.

    Shapes:
        - layer_spikes: ``T×N×D``; the raster shows ``T×(len(nodes)·D)``.
    """
    z = _binary(layer_spikes, "layer_spikes")
    check_time_first(z, "layer_spikes", (3,))
    steps, num_nodes, width = z.shape
    sel = list(range(num_nodes)) if nodes is None else [int(n) for n in nodes]
    for n in sel:
        if not 0 <= n < num_nodes:
            raise IndexError(f"node {n} out of range: the layer has {num_nodes} nodes")
    names = list(node_names) if node_names is not None else [f"node {n}" for n in sel]
    if len(names) != len(sel):
        raise ValueError(f"node_names has {len(names)} entries for {len(sel)} nodes")
    flat = z[:, sel, :].reshape(steps, len(sel) * width)
    rows_hl = None
    if highlight is not None:
        units = np.asarray(list(highlight), dtype=int)
        if units.size and (units.min() < 0 or units.max() >= width):
            raise ValueError(f"highlight neurons must lie in [0, {width}); got {units.tolist()}")
        rows_hl = (np.arange(len(sel))[:, None] * width + units[None, :]).ravel().tolist()
    # Label at most ~30 nodes so the tick labels stay legible.
    stride = max(1, int(np.ceil(len(sel) / 30)))
    ticks = [k * width + (width - 1) / 2 for k in range(0, len(sel), stride)]
    labels = names[::stride]
    head = f"{title_prefix} · " if title_prefix else ""
    return plot_spike_raster(
        flat,
        ax=ax,
        highlight=rows_hl,
        highlight_label=(
            f"highlighted neurons {list(highlight)[:6]}{'…' if len(highlight) > 6 else ''}"
            if highlight is not None
            else None
        ),
        title=f"{head}{layer_name} · {len(sel)} nodes × {width} neurons\n{_rate_text(flat)}",
        ylabel=f"node (each block = {width} neurons)",
        separators=[k * width - 0.5 for k in range(1, len(sel))],
        group_ticks=ticks,
        group_labels=labels,
        figsize=figsize,
    )


def plot_image_raster(
    layer_spikes: Any,
    *,
    node_batch: Any | None = None,
    graph: int = 0,
    image_name: str | None = None,
    node_names: Sequence[str] | None = None,
    layer_name: str = "layer",
    highlight: Sequence[int] | None = None,
    ax: Axes | None = None,
    figsize: tuple[float, float] = (7.0, 6.0),
) -> Figure:
    """Raster of one layer for every node of one image (one graph of a batch).

    Args:
        layer_spikes: one layer's spikes, time first.
        node_batch: graph index of every node (``ImageEncoding.node_batch`` /
            ``Batch.batch``); ``None`` when the tensor holds a single graph.
        graph: which graph of the batch to show.
        image_name: title text naming the image (default ``"image {graph}"``).
        node_names: labels of the graph's nodes (default: ``"global"`` for its first node,
            then ``"segment 1"``, ``"segment 2"`` …).
        layer_name: layer name for the title.
        highlight: neuron indices to highlight in every node.
        ax: axes to draw into.
        figsize: size of a new figure.

    Shapes:
        - layer_spikes: ``T×N×D``; node_batch: ``N``.
    """
    z = to_numpy(layer_spikes, "layer_spikes")
    check_time_first(z, "layer_spikes", (3,))
    if node_batch is None:
        nodes = list(range(z.shape[1]))
    else:
        nb = to_numpy(node_batch, "node_batch").astype(int).ravel()
        if nb.shape[0] != z.shape[1]:
            raise ValueError(f"node_batch has {nb.shape[0]} entries for {z.shape[1]} nodes")
        nodes = np.flatnonzero(nb == graph).tolist()
        if not nodes:
            raise IndexError(f"graph {graph} has no nodes in this batch")
    if node_names is None:
        node_names = ["global"] + [f"segment {k}" for k in range(1, len(nodes))]
    return plot_layer_raster(
        z,
        nodes=nodes,
        node_names=node_names,
        layer_name=layer_name,
        title_prefix=image_name or f"image {graph}",
        highlight=highlight,
        ax=ax,
        figsize=figsize,
    )
