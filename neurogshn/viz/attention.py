r"""GAT attention drawn as edges over the image.

Input is what PyG's ``GATConv``/``GATv2Conv`` return with ``return_attention_weights=True``:
``(edge_index 2×E, alpha E×H)``, where ``alpha[e, h]`` is head ``h``'s attention coefficient
:math:`\alpha_{ij}` of edge ``e = (j → i)`` (source row 0, target row 1); the coefficients of the
edges into one target node sum to 1 per head. Heads are averaged unless one is chosen.

Nodes are drawn at their ``pos`` (centroids ``(x, y)`` in [0, 1] of the image), node 0 being the
global node. Each directed edge is a line from source to target, shifted slightly to the right
of its direction so that ``j → i`` and ``i → j`` stay apart; line width, opacity and colour grow
with the weight. Self-loops (which GAT adds) have no length and are not drawn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from neurogshn.viz.style import new_axes, to_numpy

ATTENTION_LABEL = r"attention weight $\alpha_{ij}$"


def select_attention_edges(
    edge_index: Any,
    attention: Any,
    *,
    head: int | None = None,
    show_global: bool = False,
    global_node: int | None = 0,
    min_weight: float = 0.0,
    top_k: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The edges :func:`plot_attention` draws and their weights.

    Args:
        edge_index: ``2×E`` (source, target).
        attention: ``E`` or ``E×H`` coefficients.
        head: head to show; ``None`` averages over heads.
        show_global: keep edges touching the global node.
        global_node: index of the global node (``None``: there is none).
        min_weight: drop edges with a smaller weight.
        top_k: keep only the ``k`` heaviest of the remaining edges.

    Returns:
        ``(edges 2×E', weights E')`` without self-loops, heaviest last (drawn on top).
    """
    ei = to_numpy(edge_index, "edge_index").astype(np.int64)
    if ei.ndim != 2 or ei.shape[0] != 2:
        raise ValueError(f"edge_index must be 2×E; got shape {ei.shape}")
    a = to_numpy(attention, "attention").astype(np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] != ei.shape[1]:
        raise ValueError(
            f"attention must be E or E×heads with E = {ei.shape[1]}; got shape {a.shape}"
        )
    if head is None:
        w = a.mean(axis=1)
    else:
        if not 0 <= head < a.shape[1]:
            raise IndexError(f"head {head} out of range: {a.shape[1]} heads")
        w = a[:, head]
    keep = (ei[0] != ei[1]) & (w >= min_weight)
    if not show_global and global_node is not None:
        keep &= (ei[0] != global_node) & (ei[1] != global_node)
    ei, w = ei[:, keep], w[keep]
    order = np.argsort(w, kind="stable")
    if top_k is not None:
        order = order[-top_k:] if top_k > 0 else order[:0]
    return ei[:, order], w[order]


def plot_attention(
    image: Any,
    pos: Any,
    edge_index: Any,
    attention: Any,
    *,
    head: int | None = None,
    show_global: bool = False,
    global_node: int | None = 0,
    min_weight: float = 0.0,
    top_k: int | None = None,
    max_width: float = 5.0,
    cmap: str = "plasma",
    title: str | None = None,
    ax: Axes | None = None,
    figsize: tuple[float, float] = (5.4, 4.4),
) -> Figure:
    """Draw attention coefficients as directed edges between node centroids over the image.

    Args:
        image: the RGB image, ``H×W×3``.
        pos: node positions ``(x, y)`` in [0, 1], ``N×2`` (node 0 = global node).
        edge_index: ``2×E`` (source, target), as returned with the weights.
        attention: ``E`` or ``E×H`` coefficients.
        head: head to show (default: mean over heads).
        show_global: also draw the edges of the global node (it sits at its ``pos``, usually
            the image centre, drawn as a star).
        global_node: index of the global node, ``None`` if the graph has none.
        min_weight, top_k: show only edges with weight ≥ ``min_weight`` / the ``k`` heaviest.
        max_width: line width (points) of the heaviest edge.
        cmap: colour map of the weights.
        title: axes title.
        ax: axes to draw into.
        figsize: size of a new figure.

    Returns:
        The figure; the edges are one ``LineCollection`` with one segment per drawn edge
        (:func:`select_attention_edges` lists them).
    """
    img = to_numpy(image, "image")
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be H×W×3 RGB; got shape {img.shape}")
    p = to_numpy(pos, "pos").astype(np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"pos must be N×2; got shape {p.shape}")
    edges, w = select_attention_edges(
        edge_index,
        attention,
        head=head,
        show_global=show_global,
        global_node=global_node,
        min_weight=min_weight,
        top_k=top_k,
    )
    if edges.size and edges.max() >= p.shape[0]:
        raise IndexError(f"edge_index refers to node {edges.max()} but pos has {p.shape[0]}")
    h, wd = img.shape[:2]
    xy = np.stack([p[:, 0] * wd - 0.5, p[:, 1] * h - 0.5], axis=1)
    fig, ax = new_axes(ax, figsize)
    ax.imshow(img, interpolation="nearest", alpha=0.55)
    src, dst = xy[edges[0]], xy[edges[1]]
    d = dst - src
    length = np.linalg.norm(d, axis=1, keepdims=True)
    normal = np.stack([d[:, 1], -d[:, 0]], axis=1) / np.maximum(length, 1e-9)
    shift = normal * 0.012 * max(h, wd)
    segs = np.stack([src + shift, dst + shift], axis=1)
    top = float(w.max()) if w.size else 1.0
    norm = Normalize(vmin=0.0, vmax=max(top, 1e-6))
    colours = colormaps[cmap](norm(w))
    colours[:, 3] = 0.25 + 0.75 * norm(w)
    lines = LineCollection(
        segs, colors=colours, linewidths=0.4 + (max_width - 0.4) * norm(w), capstyle="round"
    )
    ax.add_collection(lines)
    # The receiving end of each edge (target i) gets a small dot at 85% of its length.
    ends = segs[:, 0] + 0.85 * (segs[:, 1] - segs[:, 0])
    ax.scatter(ends[:, 0], ends[:, 1], s=6 + 10 * norm(w), c=colours, zorder=2, lw=0)
    nodes = np.arange(p.shape[0])
    if not show_global and global_node is not None:
        nodes = nodes[nodes != global_node]
    ax.scatter(xy[nodes, 0], xy[nodes, 1], s=40, c="white", edgecolors="black", zorder=3)
    for n in nodes:
        ax.annotate(
            str(n),
            xy[n],
            xytext=(4, 4),
            textcoords="offset points",
            fontsize=7,
            zorder=4,
            bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7},
        )
    if show_global and global_node is not None:
        g = xy[global_node]
        ax.scatter([g[0]], [g[1]], marker="*", s=220, c="gold", edgecolors="black", zorder=4)
        ax.annotate("global", g, xytext=(6, -10), textcoords="offset points", fontsize=8)
    from matplotlib.cm import ScalarMappable

    cbar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, fraction=0.046, pad=0.03)
    cbar.set_label(ATTENTION_LABEL + (" (mean over heads)" if head is None else f" (head {head})"))
    ax.set_xlim(-0.5, wd - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(
        title
        or f"GAT attention: {edges.shape[1]} edges drawn\n(width ∝ weight; dot = receiving node)"
    )
    return fig
