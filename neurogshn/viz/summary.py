"""One-figure summary of how an image's scene graph spikes (what ``neurogshn raster`` writes).

Three panels from what the model returned for one image (no model run here):

1. the image with each segment coloured by its node's firing rate in the chosen layer;
2. the raster of that layer, for the whole image (all nodes) or for one node;
3. the firing-rate histogram of every spiking layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure

from neurogshn.utils.names import layer_name
from neurogshn.viz.raster import plot_layer_raster, plot_node_raster
from neurogshn.viz.rates import plot_rate_heatmap, plot_rate_histogram
from neurogshn.viz.segments import plot_segment_rates, segment_rates
from neurogshn.viz.style import new_figure, to_numpy

#: Above this many nodes the summary shows per-node firing rates instead of every spike.
MAX_RASTER_NODES = 16


def plot_image_summary(
    image: Any,
    segment_map: Any,
    segment_ids: Sequence[int],
    spikes: Sequence[Any],
    *,
    layer: int = -1,
    node: int | None = None,
    image_name: str = "image",
    node_names: Sequence[str] | None = None,
    fig: Figure | None = None,
    figsize: tuple[float, float] = (13.0, 7.5),
) -> Figure:
    """Segments coloured by rate + raster of one layer + rate histogram of all layers.

    Args:
        image: ``H×W×3`` RGB image.
        segment_map: ``H×W`` segment ids of the segmentation the graph was built from.
        segment_ids: segment id of every non-global node, in node order (``data.segment_id[1:]``).
        spikes: the spiking layers of one graph (``ImageEncoding.spikes`` for a batch of one).
        layer: which layer (index into ``spikes``, negative from the end).
        node: show only this node's raster (0 = global node); ``None``: every node's raster,
            or, above :data:`MAX_RASTER_NODES` nodes, the firing rate of each node and neuron.
        image_name: names the image in the titles.
        node_names: labels of the graph's nodes for the raster (default ``"0: global"``,
            ``"node 1"`` …); the image labels each segment with its node index.
        fig: figure to draw into.
        figsize: size of a new figure.

    Shapes:
        - spikes[l]: ``T×N×D_l`` with ``N = 1 + len(segment_ids)``.
    """
    if not spikes:
        raise ValueError("no spiking layers to plot")
    num = len(spikes)
    if not -num <= layer < num:
        raise IndexError(f"layer {layer} out of range: the model has {num} spiking layers")
    li = layer % num
    title_layer = f"{layer_name(li)} (LIF, {num} layers)"
    z = to_numpy(spikes[li], f"spikes[{li}]")
    ids = [int(i) for i in segment_ids]
    if z.ndim != 3 or z.shape[1] != len(ids) + 1:
        raise ValueError(
            f"spikes[{li}] has shape {tuple(z.shape)}; expected T×{len(ids) + 1}×D "
            f"(global node + {len(ids)} segments)"
        )
    fig = new_figure(fig, figsize)
    grid = fig.add_gridspec(2, 2, width_ratios=(1.0, 1.25), height_ratios=(1.15, 1.0))
    ax_img = fig.add_subplot(grid[0, 0])
    ax_hist = fig.add_subplot(grid[1, 0])
    ax_raster = fig.add_subplot(grid[:, 1])
    rates = segment_rates(z, has_global=True)
    plot_segment_rates(
        image,
        segment_map,
        rates,
        segment_ids=ids,
        ax=ax_img,
        label_segments=[str(k) for k in range(1, len(ids) + 1)],
        title=f"segments (labelled by node index) coloured by firing rate\n{title_layer}; "
        "global node 0 not shown",
    )
    names = (
        list(node_names)
        if node_names is not None
        else ["0: global"] + [f"node {k}" for k in range(1, len(ids) + 1)]
    )
    if node is None and z.shape[1] > MAX_RASTER_NODES:
        # a raster of every neuron of every node stops being readable: rates per node and
        # neuron instead, and one node's raster on request
        plot_rate_heatmap(rates=z.mean(axis=0), node_names=names, layer_name=title_layer,
                          ax=ax_raster)  # fmt: skip
        ax_raster.set_title(
            f"{title_layer}: firing rate per node and neuron ({z.shape[1]} nodes; "
            "choose one node for its raster: --node K)"
        )
    elif node is None:
        plot_layer_raster(z, node_names=names, layer_name=title_layer, ax=ax_raster)
    else:
        plot_node_raster(z, node, layer_name=title_layer, node_name=names[node], ax=ax_raster)
    plot_rate_histogram(list(spikes), layer_names=[layer_name(i) for i in range(num)], ax=ax_hist)
    fig.suptitle(image_name, fontsize="large")
    return fig
