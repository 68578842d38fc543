"""``neurogshn data graphs`` and ``neurogshn data inspect`` on the generated benchmark."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurogshn.cli import main
from neurogshn.graph import load_graph_dataset


@pytest.fixture
def scenes_copy(scenes_root: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "scenes"
    shutil.copytree(scenes_root, dst, ignore=shutil.ignore_patterns(".neurogshn_cache"))
    return dst


def test_data_graphs_builds_then_reuses(scenes_copy: Path, capsys) -> None:
    args = ["data", "graphs", "--data", str(scenes_copy), "--no-progress", "--device", "cpu"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for split in ("train", "val", "test"):
        assert f"[{split}]" in out
    assert "built" in out and "skipped 0" in out
    assert ".neurogshn_cache" in out
    assert main([*args, "--split", "train"]) == 0
    out2 = capsys.readouterr().out
    assert "from cache" in out2 and "[val]" not in out2
    # The Python API reads the same entry.
    ds = load_graph_dataset(scenes_copy, "train", progress=False, device="cpu")
    assert len(ds) == 24
    g = ds[0]
    assert g.num_nodes == int((g.node_category >= 0).sum()) + 1
    assert g.is_global[0] and not g.is_global[1:].any()
    names = ds.layout.categories
    assert {"circle", "square", "triangle", "sky", "grass"} <= set(names)


def test_graph_nodes_match_gt_segments(scenes_copy: Path) -> None:
    from neurogshn.data.coco import CocoPanopticDataset

    ds = load_graph_dataset(scenes_copy, "val", progress=False, device="cpu")
    coco = CocoPanopticDataset(scenes_copy, "val")
    for i in range(len(coco)):
        rec = coco[i]
        g = ds.get_by_image_id(rec.image_id)
        segs = rec.segmentation.segments
        assert g.num_nodes == len(segs) + 1
        assert g.segment_id[1:].tolist() == [s.id for s in segs]
        cats = [ds.layout.categories[c] for c in g.node_category[1:].tolist()]
        assert cats == [s.category for s in segs]
    boxes = load_graph_dataset(scenes_copy, "val", nodes="boxes", progress=False, device="cpu")
    patches = load_graph_dataset(scenes_copy, "val", nodes="patches", progress=False, device="cpu")
    for k in range(len(ds)):
        assert boxes[k].num_nodes == ds[k].num_nodes
        assert patches[k].num_nodes == 8 * 8 + 1


def test_data_graphs_reports_skipped_and_strict(scenes_copy: Path, capsys) -> None:
    imgs = sorted((scenes_copy / "images" / "test").glob("*.png"))
    imgs[0].write_bytes(imgs[0].read_bytes()[:40])  # truncated PNG
    base = ["data", "graphs", "--data", str(scenes_copy), "--split", "test", "--no-progress"]
    assert main(base) == 0
    out = capsys.readouterr().out
    assert "skipped 1" in out and imgs[0].name in out
    assert main([*base, "--strict", "--force"]) == 2
    err = capsys.readouterr().err
    assert imgs[0].name in err


def test_data_graphs_rebuilds_after_data_change(scenes_copy: Path, capsys) -> None:
    base = ["data", "graphs", "--data", str(scenes_copy), "--split", "val", "--no-progress"]
    assert main(base) == 0
    capsys.readouterr()
    ann = scenes_copy / "annotations" / "panoptic_val.json"
    data = json.loads(ann.read_text())
    data["images"] = data["images"][:-1]
    data["annotations"] = data["annotations"][:-1]
    ann.write_text(json.dumps(data))
    assert main(base) == 0
    out = capsys.readouterr().out
    assert "[val] 7 graphs built" in out
    assert len(list((scenes_copy / ".neurogshn_cache").iterdir())) == 1


def test_data_inspect_writes_a_picture(scenes_root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "inspect.png"
    code = main(
        [
            "data",
            "inspect",
            "--data",
            str(scenes_root),
            "--split",
            "train",
            "--index",
            "3",
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert code == 0 and out.is_file()
    img = np.asarray(Image.open(out))
    assert img.shape[1] > 1000 and img.shape[0] > 400
    assert img[..., :3].std() > 20  # not blank
    assert "nodes + global" in capsys.readouterr().out
    out2 = tmp_path / "patches.png"
    assert (
        main(
            [
                "data",
                "inspect",
                "--data",
                str(scenes_root),
                "--index",
                "0",
                "--out",
                str(out2),
                "--nodes",
                "patches",
                "--patch-grid",
                "4",
            ]
        )
        == 0
    )
    assert out2.is_file()
    assert (
        main(["data", "inspect", "--data", str(scenes_root), "--index", "999", "--out", str(out2)])
        == 2
    )
