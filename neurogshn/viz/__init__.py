"""Plots of what the model returns: spike rasters, firing rates, membrane traces, segments
coloured by rate, GAT attention over the image, and energy-report bar charts.

Every function takes tensors or arrays the model (or a report) already produced — none re-runs
a model — draws with matplotlib (Agg) into an optional ``ax``/figure and returns the
:class:`~matplotlib.figure.Figure`. See docs/visualization.md.
"""

from neurogshn.viz.attention import plot_attention, select_attention_edges
from neurogshn.viz.energy import energy_table, plot_energy, plot_energy_report
from neurogshn.viz.membrane import plot_membrane_traces
from neurogshn.viz.raster import (
    plot_image_raster,
    plot_layer_raster,
    plot_node_raster,
    plot_spike_raster,
)
from neurogshn.viz.rates import (
    RateSummary,
    firing_rates,
    plot_rate_heatmap,
    plot_rate_histogram,
    rate_summary,
)
from neurogshn.viz.segments import plot_segment_rates, segment_rate_image, segment_rates
from neurogshn.viz.style import RATE_LABEL, TIME_LABEL, render_rgb, save_figure
from neurogshn.viz.summary import plot_image_summary

__all__ = [
    "RATE_LABEL",
    "TIME_LABEL",
    "RateSummary",
    "energy_table",
    "firing_rates",
    "plot_attention",
    "plot_energy",
    "plot_energy_report",
    "plot_image_raster",
    "plot_image_summary",
    "plot_layer_raster",
    "plot_membrane_traces",
    "plot_node_raster",
    "plot_rate_heatmap",
    "plot_rate_histogram",
    "plot_segment_rates",
    "plot_spike_raster",
    "rate_summary",
    "render_rgb",
    "save_figure",
    "segment_rate_image",
    "segment_rates",
    "select_attention_edges",
]
