"""Captions the loader skips (malformed, empty) do not shift the pairing of the remaining
captions with their hard negatives, and are named in the dataset's skip list."""

from __future__ import annotations

import json

import pytest

from neurogshn.data.coco import CocoPanopticDataset
from neurogshn.data.relational.scenes import generate_scenes
from neurogshn.training.data import caption_position, load_hard_negatives


@pytest.fixture(scope="module")
def damaged_root(tmp_path_factory):
    """A generated set whose first caption of image 0 is malformed and one more is empty."""
    root = tmp_path_factory.mktemp("captions") / "scenes"
    generate_scenes(root, splits={"train": 6, "val": 1, "test": 1}, image_size=64, progress=False)
    path = root / "annotations" / "captions_train.json"
    data = json.loads(path.read_text())
    anns = data["annotations"]
    first_image = anns[0]["image_id"]
    anns[0]["caption"] = 12345  # malformed: not text
    empty = next(k for k, a in enumerate(anns) if a["image_id"] != first_image)
    anns[empty]["caption"] = "   "
    path.write_text(json.dumps(data))
    return root


def test_skipped_captions_are_named(damaged_root):
    ds = CocoPanopticDataset(damaged_root, "train")
    reasons = [s.reason for s in ds.skipped]
    assert any("needs integer image_id and caption text" in r for r in reasons)
    assert any("empty caption" in r for r in reasons)
    assert all(c for caps in ds.captions.values() for c in caps)


def test_hard_negatives_follow_their_caption_not_its_old_position(damaged_root):
    ds = CocoPanopticDataset(damaged_root, "train")
    path = damaged_root / "annotations" / "hard_negatives_train.json"
    items = json.loads(path.read_text())
    items = items["items"] if isinstance(items, dict) else items
    by_text = {(it["image_id"], it["caption"]): it for it in items}
    negatives = load_hard_negatives(path, ds.captions)
    assert negatives
    shifted = 0
    for (image_id, position), negs in negatives.items():
        caption = ds.captions[image_id][position]
        item = by_text[(image_id, caption)]
        shifted += item["caption_index"] != position
        for kind, text in negs.items():
            assert item[kind] == text
    # the malformed first caption shifted the others of its image: they were re-placed
    assert shifted > 0
    # positions read naively from the file would pair captions with other captions' negatives
    naive = load_hard_negatives(path)
    assert any(
        k[1] < len(ds.captions[k[0]]) and ds.captions[k[0]][k[1]] != by_key
        for k, by_key in (((it["image_id"], it["caption_index"]), it["caption"]) for it in items)
        if k in naive
    )


def test_caption_position_rules():
    caps = ["a", "b", "c"]
    assert caption_position(caps, 1, "b") == 1
    assert caption_position(caps, 2, "b ") == 1  # shifted: found by its text
    assert caption_position(caps, 0, "z") is None
