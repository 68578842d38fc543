r"""Segments of the image coloured by the firing rate of their graph node.

Every segment of the panoptic segmentation is a node of the scene graph (node 0 of each graph
is the global node, which has no pixels and is left out). A segment's rate is the mean over
time and neurons of its node's spikes in one layer,
:math:`r_n = \frac{1}{T D}\sum_{t,d} z_{t,n,d}` spikes per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from neurogshn.viz.style import RATE_CMAP, RATE_LABEL, check_time_first, new_axes, to_numpy


def segment_rates(
    layer_spikes: Any,
    *,
    node_batch: Any | None = None,
    graph: int = 0,
    has_global: bool = True,
) -> np.ndarray:
    """Mean firing rate of every segment node of one graph (global node excluded).

    Args:
        layer_spikes: one layer's spikes, time first.
        node_batch: graph index per node (``None`` for a single graph).
        graph: which graph of the batch.
        has_global: the graph's first node is the global node (the GSHN graph contract).

    Shapes:
        - layer_spikes: ``T×N×D`` → ``S`` (one rate per segment node, in node order).
    """
    z = to_numpy(layer_spikes, "layer_spikes").astype(np.float64)
    check_time_first(z, "layer_spikes", (3,))
    if node_batch is None:
        nodes = np.arange(z.shape[1])
    else:
        nb = to_numpy(node_batch, "node_batch").astype(int).ravel()
        if nb.shape[0] != z.shape[1]:
            raise ValueError(f"node_batch has {nb.shape[0]} entries for {z.shape[1]} nodes")
        nodes = np.flatnonzero(nb == graph)
        if nodes.size == 0:
            raise IndexError(f"graph {graph} has no nodes in this batch")
    if has_global:
        nodes = nodes[1:]
    return z[:, nodes, :].mean(axis=(0, 2))


def segment_rate_image(
    segment_map: Any,
    rates: Any,
    segment_ids: Sequence[int] | None = None,
    *,
    cmap: str = RATE_CMAP,
    vmin: float = 0.0,
    vmax: float | None = None,
    alpha: float = 0.8,
) -> tuple[np.ndarray, Normalize]:
    """The RGBA overlay: each segment's pixels get the colour of its rate; void is clear.

    Args:
        segment_map: ``H×W`` segment ids (0 = void).
        rates: one rate per segment, ``S``.
        segment_ids: the segment id of each rate (default: the sorted non-zero ids of
            ``segment_map``, which is the segmenters' node order).
        cmap, vmin, vmax: colour scale (``vmax`` default: the largest rate, at least 1e-6).
        alpha: opacity of the colour over the image.

    Returns:
        ``(overlay H×W×4 float in [0, 1], norm)``.
    """
    seg = to_numpy(segment_map, "segment_map").astype(np.int64)
    if seg.ndim != 2:
        raise ValueError(f"segment_map must be H×W; got shape {seg.shape}")
    r = to_numpy(rates, "rates").astype(np.float64).ravel()
    ids = (
        np.unique(seg[seg > 0]) if segment_ids is None else np.asarray(segment_ids, dtype=np.int64)
    )
    if ids.shape[0] != r.shape[0]:
        raise ValueError(
            f"{r.shape[0]} rates for {ids.shape[0]} segments: the rates must be in the order "
            "of the graph's segment nodes (pass segment_ids)"
        )
    top = float(r.max()) if vmax is None and r.size else (vmax if vmax is not None else 1.0)
    norm = Normalize(vmin=vmin, vmax=max(top, vmin + 1e-6))
    colours = colormaps[cmap](norm(r))
    overlay = np.zeros((*seg.shape, 4))
    lookup = {int(i): k for k, i in enumerate(ids)}
    for sid, k in lookup.items():
        mask = seg == sid
        overlay[mask, :3] = colours[k, :3]
        overlay[mask, 3] = alpha
    return overlay, norm


def plot_segment_rates(
    image: Any,
    segment_map: Any,
    rates: Any,
    *,
    segment_ids: Sequence[int] | None = None,
    title: str | None = None,
    cmap: str = RATE_CMAP,
    vmax: float | None = None,
    alpha: float = 0.8,
    show_boundaries: bool = True,
    label_segments: bool | Sequence[str] = False,
    ax: Axes | None = None,
    figsize: tuple[float, float] = (5.0, 4.2),
) -> Figure:
    """Draw the image (greyed) with every segment filled in the colour of its firing rate.

    Args:
        image: the RGB image, ``H×W×3`` (uint8 or float in [0, 1]).
        segment_map: ``H×W`` segment ids (0 = void; void keeps the grey image).
        rates: per segment node rate (:func:`segment_rates`), ``S``.
        segment_ids: segment id of each rate (default: sorted non-zero ids of the map).
        title: axes title.
        cmap, vmax, alpha: colour scale and opacity (see :func:`segment_rate_image`).
        show_boundaries: outline the segments in white.
        label_segments: write a label at each segment's centroid: ``True`` its segment id,
            or one string per rate (e.g. the node index, to match the raster's rows).
        ax: axes to draw into.
        figsize: size of a new figure.

    Returns:
        The figure: an ``imshow`` of the grey image, then an ``imshow`` of the RGBA overlay
        from :func:`segment_rate_image`, and a colorbar labelled with the rate unit.
    """
    img = to_numpy(image, "image")
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be H×W×3 RGB; got shape {img.shape}")
    seg = to_numpy(segment_map, "segment_map")
    if seg.shape != img.shape[:2]:
        raise ValueError(f"segment_map shape {seg.shape} does not match image {img.shape[:2]}")
    rgb = img.astype(np.float64) / (255.0 if img.dtype == np.uint8 or img.max() > 1 else 1.0)
    grey = rgb @ np.array([0.299, 0.587, 0.114])
    overlay, norm = segment_rate_image(seg, rates, segment_ids, cmap=cmap, vmax=vmax, alpha=alpha)
    fig, ax = new_axes(ax, figsize)
    ax.imshow(grey, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.imshow(overlay, interpolation="nearest")
    if show_boundaries:
        from skimage.segmentation import find_boundaries

        edges = find_boundaries(seg, mode="inner")
        ax.imshow(
            np.dstack([np.ones_like(edges, float)] * 3 + [edges.astype(float)]),
            interpolation="nearest",
        )
    if label_segments:
        ids = np.unique(seg[seg > 0]) if segment_ids is None else np.asarray(segment_ids)
        if isinstance(label_segments, bool):
            texts = [str(int(i)) for i in ids]
        else:
            texts = [str(t) for t in label_segments]
            if len(texts) != len(ids):
                raise ValueError(f"{len(texts)} segment labels for {len(ids)} segments")
        for sid, text in zip(ids, texts):
            ys, xs = np.nonzero(seg == sid)
            if xs.size:
                ax.text(
                    xs.mean(),
                    ys.mean(),
                    text,
                    fontsize=7,
                    ha="center",
                    va="center",
                    bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7},
                )
    from matplotlib.cm import ScalarMappable

    cbar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, fraction=0.046, pad=0.03)
    cbar.set_label(RATE_LABEL)
    ax.set_axis_off()
    r = to_numpy(rates, "rates").ravel()
    ax.set_title(
        title or f"segments coloured by firing rate\n({r.size} segments; global node not shown)"
    )
    return fig
