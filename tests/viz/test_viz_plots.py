"""Content checks of every plot in neurogshn.viz (synthetic spike tensors, no model run)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from neurogshn.errors import InputFileError
from neurogshn.viz import (
    RATE_LABEL,
    TIME_LABEL,
    energy_table,
    firing_rates,
    plot_attention,
    plot_energy,
    plot_image_raster,
    plot_layer_raster,
    plot_membrane_traces,
    plot_node_raster,
    plot_rate_heatmap,
    plot_rate_histogram,
    plot_segment_rates,
    plot_spike_raster,
    rate_summary,
    render_rgb,
    save_figure,
    segment_rate_image,
    segment_rates,
    select_attention_edges,
)


def _spikes(t: int = 6, n: int = 5, d: int = 8, p: float = 0.3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(t, n, d, generator=g) < p).float()


def _marks(ax) -> list[np.ndarray]:
    """Centres (t, row) of every spike bar drawn on ``ax``."""
    out = []
    for coll in ax.collections:
        if isinstance(coll, LineCollection):
            for seg in coll.get_segments():
                out.append(seg.mean(axis=0))
    return out


# --- rasters ---------------------------------------------------------------------------------


def test_spike_raster_one_mark_per_spike_at_the_right_place():
    z = _spikes(t=7, n=1, d=20)[:, 0, :]
    fig = plot_spike_raster(z)
    ax = fig.axes[0]
    marks = np.array(_marks(ax))
    assert len(marks) == int(z.sum())
    expected = {(int(t), int(m)) for t, m in zip(*np.nonzero(z.numpy()))}
    assert {(round(x), round(y)) for x, y in marks} == expected
    assert ax.get_xlabel() == TIME_LABEL
    assert "neuron" in ax.get_ylabel()
    assert f"{float(z.mean()):.3f}" in ax.get_title()


def test_raster_rejects_non_binary_and_wrong_rank():
    with pytest.raises(ValueError, match="0 and 1"):
        plot_spike_raster(np.full((3, 4), 0.5))
    with pytest.raises(ValueError, match="time first"):
        plot_spike_raster(np.zeros((3, 4, 5)))


def test_empty_raster_draws_no_marks():
    fig = plot_spike_raster(np.zeros((4, 10)))
    assert _marks(fig.axes[0]) == []


def test_node_raster_selects_the_node_and_highlights():
    z = _spikes(n=4, d=10)
    fig = plot_node_raster(z, 2, layer_name="layer0", highlight=[1, 3])
    ax = fig.axes[0]
    sub = z[:, 2, :].numpy()
    assert len(_marks(ax)) == int(sub.sum())
    red = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(red) == 2  # ordinary + highlighted
    assert len(red[1].get_segments()) == int(sub[:, [1, 3]].sum())
    assert "layer0" in ax.get_title() and "node 2" in ax.get_title()
    assert ax.get_legend() is not None


def test_image_raster_lays_out_nodes_of_one_graph():
    z = _spikes(n=7, d=5)
    batch = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    fig = plot_image_raster(z, node_batch=batch, graph=1, layer_name="L2")
    ax = fig.axes[0]
    sub = z[:, 3:, :].numpy()  # nodes 3..6 belong to graph 1
    marks = np.array(_marks(ax))
    assert len(marks) == int(sub.sum())
    flat = sub.reshape(sub.shape[0], -1)
    expected = {(int(t), int(m)) for t, m in zip(*np.nonzero(flat))}
    assert {(round(x), round(y)) for x, y in marks} == expected
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["global", "segment 1", "segment 2", "segment 3"]
    # three separators between four node blocks
    hlines = [ln for ln in ax.lines if list(ln.get_xdata()) == [0, 1]]
    assert sorted(ln.get_ydata()[0] for ln in hlines) == [4.5, 9.5, 14.5]
    assert "image 1" in ax.get_title()


def test_layer_raster_counts_and_validates():
    z = _spikes(n=3, d=4)
    fig = plot_layer_raster(z, highlight=[0])
    assert len(_marks(fig.axes[0])) == int(z.sum())
    with pytest.raises(IndexError):
        plot_layer_raster(z, nodes=[5])
    with pytest.raises(ValueError, match="highlight"):
        plot_layer_raster(z, highlight=[4])


# --- rates -----------------------------------------------------------------------------------


def test_rate_heatmap_array_equals_rates():
    z = _spikes(t=5, n=4, d=6)
    fig = plot_rate_heatmap(z, layer_name="layer1")
    ax = fig.axes[0]
    arr = np.asarray(ax.images[0].get_array())
    np.testing.assert_allclose(arr, z.mean(0).numpy())
    np.testing.assert_allclose(firing_rates(z), z.mean(0).numpy())
    cbar_ax = fig.axes[1]
    assert cbar_ax.get_ylabel() == RATE_LABEL
    silent = float((z.mean(0) == 0).float().mean())
    assert f"{100 * silent:.1f}% silent" in ax.get_title()


def test_rate_histogram_bars_are_fractions_with_stats_in_legend():
    z1 = _spikes(t=4, n=3, d=5, p=0.5, seed=1)
    z2 = torch.zeros(4, 3, 2)
    fig = plot_rate_histogram([z1, z2], layer_names=["a", "b"])
    ax = fig.axes[0]
    assert ax.get_xlabel() == RATE_LABEL
    heights = [[p.get_height() for p in c] for c in ax.containers]
    counts = np.bincount((z1.mean(0).numpy().ravel() * 4).round().astype(int), minlength=5)
    np.testing.assert_allclose(heights[0], counts / counts.sum())
    np.testing.assert_allclose(heights[1], [1, 0, 0, 0, 0])
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    s1 = rate_summary(z1)
    assert f"mean {s1.mean_rate:.3f}" in texts[0]
    assert f"{100 * s1.silent_fraction:.1f}% silent" in texts[0]
    assert "100.0% silent" in texts[1]


def test_rate_summary_values():
    z = torch.zeros(2, 1, 4)
    z[:, 0, 0] = 1  # always fires
    z[0, 0, 1] = 1  # half the time
    s = rate_summary(z)
    assert s.mean_rate == pytest.approx(3 / 8)
    assert s.silent_fraction == pytest.approx(0.5)
    assert s.saturated_fraction == pytest.approx(0.25)
    assert s.spikes == 3


# --- membrane --------------------------------------------------------------------------------


def test_membrane_traces_threshold_and_spikes():
    v = torch.tensor([[0.3], [0.7], [0.0], [0.5], [0.0]]).repeat(1, 2).reshape(5, 1, 2)
    z = torch.tensor([[0], [0], [1], [0], [1]]).float().repeat(1, 2).reshape(5, 1, 2)
    fig = plot_membrane_traces(v, z, [(0, 0), (0, 1)], threshold=0.8, layer_name="L1")
    axes = list(fig.axes)
    assert len(axes) == 2
    ax = axes[0]
    ths = [
        ln
        for ln in ax.lines
        if len(ln.get_ydata()) == 2 and np.allclose(ln.get_ydata(), [0.8, 0.8])
    ]
    assert len(ths) == 1
    spike_marks = ax.collections[0].get_offsets()
    np.testing.assert_allclose(np.asarray(spike_marks)[:, 0], [2, 4])
    assert all(y > 0.8 for y in np.asarray(spike_marks)[:, 1])
    dots = next(ln for ln in ax.lines if ln.get_marker() == "o")
    np.testing.assert_allclose(dots.get_ydata(), v[:, 0, 0].numpy())
    assert axes[-1].get_xlabel() == TIME_LABEL
    with pytest.raises(ValueError, match="pairs"):
        plot_membrane_traces(v, z, [0])


# --- segments --------------------------------------------------------------------------------


def test_segment_rates_exclude_global_node():
    z = torch.zeros(4, 6, 3)
    z[:, 0] = 1  # global node of graph 0 fires always
    z[:2, 1, 0] = 1  # segment 1: 2 spikes of 12 slots
    batch = torch.tensor([0, 0, 0, 1, 1, 1])
    r = segment_rates(z, node_batch=batch, graph=0)
    np.testing.assert_allclose(r, [2 / 12, 0.0])
    assert segment_rates(z, node_batch=batch, graph=1).shape == (2,)


def test_segment_colouring_matches_rate_colours_on_canvas():
    h = w = 40
    seg = np.zeros((h, w), dtype=np.int64)
    seg[:, :20] = 5
    seg[:, 20:] = 9
    seg[:10, :10] = 0  # void
    image = np.full((h, w, 3), 128, dtype=np.uint8)
    rates = np.array([0.1, 0.9])
    overlay, norm = segment_rate_image(seg, rates, [5, 9], alpha=1.0, vmax=1.0)
    cmap = colormaps["viridis"]
    np.testing.assert_allclose(overlay[30, 5, :3], cmap(norm(0.1))[:3])
    np.testing.assert_allclose(overlay[30, 35, :3], cmap(norm(0.9))[:3])
    assert overlay[2, 2, 3] == 0.0  # void stays transparent
    # rendered: read the pixel colours back from the canvas (opaque overlay, no boundaries)
    fig = plot_segment_rates(
        image, seg, rates, segment_ids=[5, 9], alpha=1.0, vmax=1.0, show_boundaries=False
    )
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.images[1].get_array(), overlay)
    rgb = render_rgb(fig)
    fig_h = rgb.shape[0]
    for x, y, rate in [(5, 30, 0.1), (35, 30, 0.9)]:
        px, py = ax.transData.transform((x, y))
        got = rgb[int(fig_h - py), int(px)] / 255.0
        np.testing.assert_allclose(got, cmap(Normalize(0, 1)(rate))[:3], atol=2 / 255)
    assert fig.axes[1].get_ylabel() == RATE_LABEL


def test_segment_rate_count_mismatch_is_explained():
    seg = np.array([[1, 2], [3, 3]])
    with pytest.raises(ValueError, match="segment_ids"):
        segment_rate_image(seg, [0.1, 0.2])


# --- attention -------------------------------------------------------------------------------


def _graph(n: int = 5, heads: int = 2):
    src, dst = np.meshgrid(np.arange(n), np.arange(n))
    ei = np.stack([src.ravel(), dst.ravel()])  # includes self-loops and global edges
    att = np.random.default_rng(0).random((ei.shape[1], heads))
    pos = np.random.default_rng(1).random((n, 2))
    pos[0] = 0.5
    return torch.as_tensor(ei), torch.as_tensor(att), torch.as_tensor(pos)


def test_attention_draws_one_line_per_selected_edge():
    ei, att, pos = _graph()
    img = np.zeros((32, 48, 3), dtype=np.uint8)
    fig = plot_attention(img, pos, ei, att)
    ax = fig.axes[0]
    lines = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(lines) == 1
    # 5 nodes, no self-loops, no global-node edges: 4*3 directed edges
    assert len(lines[0].get_segments()) == 12
    edges, w = select_attention_edges(ei, att)
    assert edges.shape == (2, 12)
    mean = att.mean(1).numpy()
    full = {(int(s), int(t)): mean[k] for k, (s, t) in enumerate(ei.T.tolist())}
    np.testing.assert_allclose(w, [full[(int(s), int(t))] for s, t in edges.T])
    widths = lines[0].get_linewidths()
    assert widths[-1] == max(widths)  # heaviest edge drawn last and widest
    assert "attention" in fig.axes[1].get_ylabel()
    fig2 = plot_attention(img, pos, ei, att, show_global=True, head=1, top_k=7)
    lines2 = [c for c in fig2.axes[0].collections if isinstance(c, LineCollection)]
    assert len(lines2[0].get_segments()) == 7
    assert "head 1" in fig2.axes[1].get_ylabel()


def test_attention_from_pyg_gatv2():
    from torch_geometric.nn import GATv2Conv

    ei, _, pos = _graph(n=4)
    keep = ei[0] != ei[1]
    conv = GATv2Conv(3, 4, heads=2)
    _, (ei_out, alpha) = conv(torch.randn(4, 3), ei[:, keep], return_attention_weights=True)
    fig = plot_attention(np.zeros((20, 20, 3)), pos, ei_out, alpha.detach(), show_global=True)
    lines = [c for c in fig.axes[0].collections if isinstance(c, LineCollection)]
    assert len(lines[0].get_segments()) == int((ei_out[0] != ei_out[1]).sum())


# --- energy ----------------------------------------------------------------------------------


REPORT = {
    "estimate": True,
    "unit": "J",
    "profiles": {
        "cmos45nm": {"spiking branch": 1.5e-7, "ANN equivalent": 2.0e-6, "GAT host": 8e-7},
        "loihi": {"spiking branch": 4e-8, "GAT host": 8e-7},
    },
}


def test_energy_bars_equal_report_values(tmp_path):
    fig = plot_energy(REPORT)
    ax = fig.axes[0]
    # linear from zero: bar heights compare as the values do
    assert ax.get_yscale() == "linear" and ax.get_ylim()[0] == 0
    assert "µJ" in ax.get_ylabel() and "estimate" in ax.get_ylabel()
    assert "log" not in ax.get_ylabel()
    labels = [t.get_text() for c in ax.texts for t in [c]]
    assert "2" in labels and "0.15" in labels  # every bar carries its value
    log_ax = plot_energy(REPORT, log=True).axes[0]
    assert log_ax.get_yscale() == "log" and "log scale" in log_ax.get_ylabel()
    got = {c.get_label(): [p.get_height() for p in c] for c in ax.containers}
    np.testing.assert_allclose(got["spiking branch"], [0.15, 0.04])
    np.testing.assert_allclose(got["ANN equivalent"], [2.0])
    np.testing.assert_allclose(got["GAT host"], [0.8, 0.8])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cmos45nm", "loihi"]
    path = tmp_path / "energy.json"
    path.write_text(json.dumps({**REPORT, "unit": "nJ"}))
    fig2 = plot_energy(path, unit="nJ")
    ax2 = fig2.axes[0]
    got2 = {c.get_label(): [p.get_height() for p in c] for c in ax2.containers}
    np.testing.assert_allclose(got2["ANN equivalent"], [2.0e-6])
    assert "nJ" in ax2.get_ylabel()


def test_energy_table_layouts_and_errors(tmp_path):
    as_list = {"profiles": [{"name": "p", "per_image_J": {"spiking branch": 1e-9}}]}
    assert energy_table(as_list) == {"p": {"spiking branch": 1e-9}}
    nested = {"profiles": {"p": {"per_image_J": {"GAT host": 2e-6}, "source": "x"}}}
    assert energy_table(nested) == {"p": {"GAT host": 2e-6}}
    with pytest.raises(ValueError, match="profiles"):
        energy_table({"x": 1})
    with pytest.raises(InputFileError, match="not found"):
        energy_table(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with pytest.raises(InputFileError, match="JSON"):
        energy_table(bad)


# --- common ----------------------------------------------------------------------------------


def test_every_plot_accepts_an_axes_and_saves_png(tmp_path):
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_spike_raster(np.eye(3), ax=ax) is fig
    # a new figure renders itself for Jupyter (no pyplot backend involved)
    assert plot_spike_raster(np.eye(3))._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"
    path = tmp_path / "out" / "raster.png"
    save_figure(fig, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_energy_plot_reads_the_hardware_report():
    from neurogshn.hardware.energy import activity_from_spikes, estimate_energy
    from neurogshn.hardware.profiles import load_profile

    g = np.random.default_rng(0)
    spikes = [(g.random((6, 10, 16)) < 0.2).astype(float), (g.random((6, 10, 8)) < 0.2)]
    act = activity_from_spikes(spikes, in_features=32, nodes_per_image=10, edges_per_image=40)
    est = estimate_energy(act, load_profile("cmos45nm"), load_profile("loihi1"), 2.5e6)
    report = json.loads(json.dumps(est))  # what the JSON file holds
    per_image = report["energy_per_image_pJ"]
    table = energy_table(report)
    assert table["cmos45nm"]["spiking branch"] == pytest.approx(per_image["snn_cmos45nm"] * 1e-12)
    assert table["cmos45nm"]["ANN equivalent"] == pytest.approx(per_image["ann_cmos45nm"] * 1e-12)
    assert table["cmos45nm"]["GAT host"] == pytest.approx(per_image["gat_host_cmos45nm"] * 1e-12)
    assert table["loihi1"]["spiking branch"] == pytest.approx(per_image["snn_loihi1"] * 1e-12)
    fig = plot_energy(report, unit="nJ")
    ax = fig.axes[0]
    got = {c.get_label(): [p.get_height() for p in c] for c in ax.containers}
    np.testing.assert_allclose(
        got["spiking branch"], [per_image["snn_cmos45nm"] / 1e3, per_image["snn_loihi1"] / 1e3]
    )
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cmos45nm", "loihi1"]
