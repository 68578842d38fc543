"""Graph cache: reuse, invalidation by every key part and by the data, atomic writes, skipped
records. Uses a small duck-typed data set over real files (the COCO loader has its own tests;
test_graph_cache_scenes.py runs the real loader on the generated benchmark)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch_geometric.loader import DataLoader

from neurogshn.errors import DataError
from neurogshn.graph import GraphBuilderConfig, GraphDataset, SceneGraphBuilder, build_graph_cache
from neurogshn.graph.cache import dataset_fingerprint
from neurogshn.segmentation import SegmentInfo, segmentation_from_map

CATEGORIES = {1: {"name": "circle", "isthing": 1}, 2: {"name": "sky", "isthing": 0}}


class FakeDataset:
    """Reads ``images/{split}/{i}.png``; segmentation: left half sky, a square 'circle'."""

    def __init__(self, root: Path, split: str, bad: set[int] = frozenset()) -> None:
        self.root, self.split, self.bad = root, split, bad
        self.files = sorted((root / "images" / split).glob("*.png"))
        self.categories = CATEGORIES
        self.skipped = []

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        if i in self.bad:
            raise DataError(self.files[i], "truncated PNG")
        img = np.asarray(Image.open(self.files[i]).convert("RGB"))
        h, w = img.shape[:2]
        m = np.zeros((h, w), np.int64)
        m[:, : w // 2] = 1
        m[2 + i : 8 + i, w // 2 + 2 : w // 2 + 8] = 2
        seg = segmentation_from_map(
            m, {1: SegmentInfo("sky", False), 2: SegmentInfo("circle", True)}
        )
        return SimpleNamespace(
            image_id=100 + i, file_name=self.files[i].name, image=img, segmentation=seg, captions=[]
        )


def make_root(tmp_path: Path, n: int = 5) -> Path:
    root = tmp_path / "ds"
    (root / "images" / "train").mkdir(parents=True)
    (root / "annotations").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(
            root / "images" / "train" / f"{i:03d}.png"
        )
    (root / "annotations" / "panoptic_train.json").write_text(json.dumps({"v": 1}))
    return root


def build(root: Path, **kw):
    kw.setdefault("dataset", FakeDataset(root, "train"))
    return build_graph_cache(root, "train", progress=False, device="cpu", batch_size=2, **kw)


def entries(root: Path) -> list[str]:
    d = root / ".neurogshn_cache"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_build_then_reuse(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    first = build(root)
    assert first.built and first.path.parent == root / ".neurogshn_cache"
    assert (first.path / "graphs.safetensors").is_file() and (first.path / "index.json").is_file()
    again = build(root)
    assert not again.built and again.path == first.path
    ds = again.dataset
    assert len(ds) == 5 and ds.image_ids == [100, 101, 102, 103, 104]
    assert ds.feature_dim == first.dataset.feature_dim == 472 + 7 + 3 + 3 + 2
    assert ds.edge_dim == 9
    # Cached graphs equal freshly built ones.
    fake = FakeDataset(root, "train")
    from neurogshn.features import get_backbone

    builder = SceneGraphBuilder(get_backbone(device="cpu"), ["circle", "sky"], GraphBuilderConfig())
    rec = fake[3]
    direct = builder(rec.image, rec.segmentation, rec.image_id)
    cached = ds.get_by_image_id(103)
    # The cache ran the backbone on a batch, `direct` on one image: float32 convolutions may
    # sum in another order (1.4e-5 on a 0.05 feature, measured on an AVX-512 CPU).
    for key in ("x", "edge_index", "edge_attr", "pos", "is_global", "node_category", "segment_id"):
        torch.testing.assert_close(getattr(cached, key), getattr(direct, key), atol=1e-4, rtol=1e-4)
    batch = next(iter(DataLoader(ds, batch_size=5)))
    assert batch.num_graphs == 5 and batch.is_global.sum() == 5
    index = json.loads((first.path / "index.json").read_text())
    assert index["layout"]["categories"] == ["circle", "sky"]
    assert index["key"]["builder"]["nodes"] == "panoptic"


@pytest.mark.parametrize(
    "change",
    [
        {"nodes": "boxes"},
        {"nodes": "patches"},
        {"edges": "none"},
        {"builder_config": GraphBuilderConfig(knn_k=1)},
        {"segmenter": "superpixel", "segmenter_kwargs": {"n_segments": 4}},
    ],
)
def test_key_change_builds_a_new_entry(tmp_path: Path, change: dict) -> None:
    root = make_root(tmp_path, n=2)
    base = build(root)
    other = build(root, **change)
    assert other.built and other.path != base.path
    assert build(root, **change).built is False


def test_data_change_invalidates(tmp_path: Path) -> None:
    root = make_root(tmp_path, n=3)
    fp0 = dataset_fingerprint(root, "train")
    first = build(root)
    # Annotation bytes change -> new fingerprint, rebuilt, stale entry removed.
    (root / "annotations" / "panoptic_train.json").write_text(json.dumps({"v": 2}))
    fp1 = dataset_fingerprint(root, "train")
    assert fp1 != fp0
    second = build(root)
    assert second.built and second.path != first.path
    assert entries(root) == [second.path.name]
    # An image rewritten (size/mtime change) -> rebuilt, and the graph reflects the new pixels.
    img_path = root / "images" / "train" / "001.png"
    Image.fromarray(np.full((24, 32, 3), 255, np.uint8)).save(img_path)
    os.utime(img_path, ns=(1, 1))
    third = build(root)
    assert third.built and third.path != second.path
    col = third.dataset.layout.slices["color"]
    assert torch.allclose(third.dataset[1].x[:, col], torch.ones(1))
    # Files of other splits do not enter this split's fingerprint.
    before = dataset_fingerprint(root, "train")
    (root / "images" / "val").mkdir()
    (root / "images" / "val" / "x.png").write_bytes(b"not used")
    assert dataset_fingerprint(root, "train") == before
    assert not build(root).built


def test_interrupted_build_leaves_no_partial_entry(tmp_path: Path, monkeypatch) -> None:
    root = make_root(tmp_path, n=5)
    good = build(root)
    calls = {"n": 0}
    real = SceneGraphBuilder.build_batch

    def flaky(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(SceneGraphBuilder, "build_batch", flaky)
    with pytest.raises(KeyboardInterrupt):
        build(root, nodes="boxes")
    assert entries(root) == [good.path.name]  # nothing partial, no temp directories
    # Also while saving: a crash during the write keeps the existing entry intact.
    monkeypatch.setattr(SceneGraphBuilder, "build_batch", real)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", boom)
    with pytest.raises(OSError):
        build(root, force=True)
    assert entries(root) == [good.path.name]
    assert len(GraphDataset.load(good.path)) == 5


def test_damaged_entry_is_rebuilt(tmp_path: Path) -> None:
    root = make_root(tmp_path, n=2)
    first = build(root)
    (first.path / "graphs.safetensors").write_bytes(b"\x00" * 10)
    with pytest.warns(UserWarning, match="rebuilding damaged graph cache"):
        again = build(root)
    assert again.built and len(again.dataset) == 2
    with pytest.raises(DataError, match=r"index\.json"):
        GraphDataset.load(tmp_path)


def test_skipped_records_are_reported_or_fatal(tmp_path: Path) -> None:
    root = make_root(tmp_path, n=4)
    res = build(root, dataset=FakeDataset(root, "train", bad={2}))
    assert len(res.dataset) == 3 and res.dataset.image_ids == [100, 101, 103]
    assert res.dataset.skipped == [
        {"path": str(root / "images/train/002.png"), "reason": "truncated PNG"}
    ]
    reread = GraphDataset.load(res.path)
    assert reread.skipped == res.dataset.skipped
    with pytest.raises(DataError, match="truncated"):
        build(root, dataset=FakeDataset(root, "train", bad={2}), strict=True, force=True)


def test_empty_dataset(tmp_path: Path) -> None:
    root = make_root(tmp_path, n=0)
    res = build(root)
    assert len(res.dataset) == 0 and GraphDataset.load(res.path).image_ids == []


def test_a_lenient_cache_is_refused_by_a_strict_reader_and_named_to_a_lenient_one(
    tmp_path: Path,
) -> None:
    root = make_root(tmp_path, n=4)
    first = build(root, dataset=FakeDataset(root, "train", bad={2}))
    assert first.built and len(first.dataset) == 3
    with pytest.raises(DataError, match=r"truncated PNG.*lenient graph cache") as exc:
        build(root, dataset=FakeDataset(root, "train", bad={2}), strict=True)
    assert exc.value.path == str(root / "images/train/002.png")
    with pytest.warns(UserWarning, match=r"without 1 record\(s\): .*002\.png: truncated PNG"):
        again = build(root, dataset=FakeDataset(root, "train", bad={2}))
    assert not again.built and len(again.dataset) == 3
