"""``neurogshn raster`` end to end with a tiny checkpoint (real backbone, superpixels)."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.collections import LineCollection
from PIL import Image

from neurogshn.cli import build_parser, main
from neurogshn.cli.raster import make_raster_figure
from neurogshn.viz import TIME_LABEL


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from neurogshn.model.gshn import GSHN

    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    GSHN.from_config_name("gshn-tiny").save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    from skimage import data

    path = tmp_path_factory.mktemp("img") / "coffee.png"
    Image.fromarray(data.coffee()[::4, ::4]).save(path)  # 100×150
    return path


def test_raster_command_draws_the_models_spikes(tiny_checkpoint, photo, tmp_path, capsys):
    out = tmp_path / "r.png"
    argv = ["raster", "--checkpoint", str(tiny_checkpoint), "--image", str(photo),
            "--out", str(out), "--layer", "0", "--superpixels", "12"]  # fmt: skip
    fig, info = make_raster_figure(build_parser().parse_args(argv))
    spikes, graph = info["spikes"], info["graph"]
    segments = len(info["segmentation"].segments)
    assert graph.num_nodes == segments + 1
    assert [tuple(s.shape) for s in spikes] == [(4, segments + 1, 32)] * 2  # gshn-tiny
    raster = next(ax for ax in fig.axes if ax.get_xlabel() == TIME_LABEL)
    marks = sum(len(c.get_segments()) for c in raster.collections if isinstance(c, LineCollection))
    assert marks == int(spikes[0].sum())  # --layer 0
    assert "layer0 (LIF, 2 layers)" in raster.get_title()

    assert main(argv) == 0
    printed = capsys.readouterr().out
    rates = ", ".join(f"layer{i} {float(s.mean()):.3f}" for i, s in enumerate(spikes))
    assert f"{segments + 1} nodes" in printed and rates in printed
    png = np.asarray(Image.open(out).convert("RGB"))
    assert png.shape[0] > 400 and png.shape[1] > 800
    assert png.std() > 10  # not a blank canvas


def test_raster_command_reports_bad_arguments(tiny_checkpoint, photo, tmp_path, capsys):
    base = ["raster", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "x.png")]
    assert main([*base, "--image", str(photo), "--node", "999"]) == 2
    assert "--node 999 out of range" in capsys.readouterr().err
    assert main([*base, "--image", str(photo), "--segmenter", "gt"]) == 2
    assert "needs --data" in capsys.readouterr().err
    assert main([*base, "--image", str(tmp_path / "none.png")]) == 2
    assert "image file not found" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_raster_command_on_a_dataset_record(tiny_checkpoint, scenes_root, tmp_path):
    from neurogshn.data.coco import CocoPanopticDataset

    record = CocoPanopticDataset(scenes_root, "val")[3]
    argv = ["raster", "--checkpoint", str(tiny_checkpoint), "--data", str(scenes_root),
            "--split", "val", "--index", "3", "--node", "1",
            "--out", str(tmp_path / "d.png")]  # fmt: skip
    fig, info = make_raster_figure(build_parser().parse_args(argv))
    graph, seg = info["graph"], info["segmentation"]
    assert seg is record.segmentation or np.array_equal(
        seg.segment_map, record.segmentation.segment_map
    )  # ground-truth segments by default
    assert graph.image_id == record.image_id
    assert sorted(graph.segment_id[1:].tolist()) == sorted(s.id for s in seg.segments)
    raster = next(ax for ax in fig.axes if ax.get_xlabel() == TIME_LABEL)
    marks = sum(len(c.get_segments()) for c in raster.collections if isinstance(c, LineCollection))
    assert marks == int(info["spikes"][-1][:, 1].sum())  # --node 1, last layer
    category = next(s.category for s in seg.segments if s.id == int(graph.segment_id[1]))
    assert f"1: {category}" in raster.get_title()
    assert main(argv) == 0 and (tmp_path / "d.png").stat().st_size > 10_000
    assert main([*argv[:-1], str(tmp_path / "e.png"), "--index", "99"]) == 2
