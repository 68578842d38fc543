"""The one-image summary figure and the ``neurogshn raster`` command's pieces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from matplotlib.collections import LineCollection
from PIL import Image

from neurogshn.cli import build_parser
from neurogshn.cli.raster import checkpoint_categories, load_image
from neurogshn.errors import ConfigError, InputFileError
from neurogshn.viz import RATE_LABEL, TIME_LABEL, plot_image_summary, segment_rate_image


def _scene():
    seg = np.zeros((24, 24), dtype=np.int64)
    seg[:, :12] = 3
    seg[:, 12:] = 7
    image = np.zeros((24, 24, 3), dtype=np.uint8)
    g = torch.Generator().manual_seed(0)
    spikes = [(torch.rand(5, 3, d, generator=g) < 0.4).float() for d in (6, 4)]
    return image, seg, spikes


def _marks(ax) -> int:
    return sum(len(c.get_segments()) for c in ax.collections if isinstance(c, LineCollection))


def test_summary_has_segments_raster_and_histogram():
    image, seg, spikes = _scene()
    fig = plot_image_summary(image, seg, [7, 3], spikes, layer=0, image_name="img")
    titles = [ax.get_title() for ax in fig.axes]
    seg_ax = next(ax for ax in fig.axes if "coloured by firing rate" in ax.get_title())
    raster_ax = next(ax for ax in fig.axes if ax.get_xlabel() == TIME_LABEL)
    hist_ax = next(ax for ax in fig.axes if ax.get_xlabel() == RATE_LABEL)
    assert "layer0 (LIF, 2 layers)" in seg_ax.get_title(), titles
    assert _marks(raster_ax) == int(spikes[0].sum())
    assert len(hist_ax.containers) == 2
    # node 1 ↔ segment 7, node 2 ↔ segment 3: the overlay colours follow that order
    overlay = np.asarray(seg_ax.images[1].get_array())
    r = spikes[0][:, 1:, :].mean(dim=(0, 2)).numpy()
    expected, norm = segment_rate_image(seg, r, [7, 3])
    np.testing.assert_allclose(overlay, expected)
    cmap = colormaps["viridis"]
    np.testing.assert_allclose(overlay[0, 20, :3], cmap(norm(r[0]))[:3])  # segment 7 = node 1
    np.testing.assert_allclose(overlay[0, 2, :3], cmap(norm(r[1]))[:3])


def test_summary_single_node_and_errors():
    image, seg, spikes = _scene()
    fig = plot_image_summary(image, seg, [3, 7], spikes, node=2)
    raster_ax = next(ax for ax in fig.axes if ax.get_xlabel() == TIME_LABEL)
    assert _marks(raster_ax) == int(spikes[-1][:, 2].sum())
    with pytest.raises(IndexError):
        plot_image_summary(image, seg, [3, 7], spikes, layer=2)
    with pytest.raises(ValueError, match="global node"):
        plot_image_summary(image, seg, [3], spikes)


def test_many_nodes_show_rates_per_node_and_one_node_on_request():
    from neurogshn.viz.summary import MAX_RASTER_NODES

    n = MAX_RASTER_NODES + 14  # 30 nodes: every spike of every neuron would be unreadable
    seg = np.repeat(np.arange(1, n), 2)[None, :].repeat(4, axis=0)  # n - 1 thin segments
    image = np.zeros((*seg.shape, 3), dtype=np.uint8)
    g = torch.Generator().manual_seed(1)
    spikes = [(torch.rand(5, n, 8, generator=g) < 0.3).float()]
    fig = plot_image_summary(image, seg, list(range(1, n)), spikes)
    rates_ax = next(ax for ax in fig.axes if "per node and neuron" in ax.get_title())
    assert "--node K" in rates_ax.get_title() and f"{n} nodes" in rates_ax.get_title()
    np.testing.assert_allclose(rates_ax.images[0].get_array(), spikes[0].mean(dim=0).numpy())
    assert not any(ax.get_xlabel() == TIME_LABEL for ax in fig.axes)
    one = plot_image_summary(image, seg, list(range(1, n)), spikes, node=5)
    raster_ax = next(ax for ax in one.axes if ax.get_xlabel() == TIME_LABEL)
    assert _marks(raster_ax) == int(spikes[0][:, 5].sum())


def test_raster_parser_accepts_documented_options():
    args = build_parser().parse_args(
        ["raster", "--checkpoint", "c", "--data", "d", "--split", "test", "--index", "3",
         "--out", "o.png", "--layer", "1", "--node", "1", "--segmenter", "superpixel"]
    )  # fmt: skip
    assert (args.data, args.split, args.index, args.layer, args.node) == ("d", "test", 3, 1, 1)
    assert args.segmenter == "superpixel" and args.image is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(
            ["raster", "--checkpoint", "c", "--image", "a.png", "--data", "d", "--out", "o"]
        )


def test_load_image_downscales_and_reports_bad_files(tmp_path):
    path = tmp_path / "big.png"
    Image.fromarray(np.full((300, 1024, 3), 200, dtype=np.uint8)).save(path)
    img = load_image(path, max_side=512)
    assert img.shape == (150, 512, 3) and img.dtype == np.uint8
    with pytest.raises(InputFileError, match="not found"):
        load_image(tmp_path / "missing.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputFileError, match="readable image"):
        load_image(bad)


class _Cfg:
    def __init__(self, node_features, categories=None):
        self.node_features = node_features
        if categories is not None:
            self.categories = categories


def test_checkpoint_categories_reproduce_the_feature_width():
    # visual 10 + geometry 7 + colour 3 + unknown 1 + flags 2 = 23 fixed columns
    assert checkpoint_categories(_Cfg(23 + 2), 10, ["a", "b"]) == ("a", "b")
    assert checkpoint_categories(_Cfg(23 + 3), 10, ["a", "b"]) == (
        "category_0",
        "category_1",
        "category_2",
    )
    assert checkpoint_categories(_Cfg(99, ["x"]), 10, None) == ("x",)
    with pytest.raises(ConfigError, match="backbone"):
        checkpoint_categories(_Cfg(5), 10, None)
