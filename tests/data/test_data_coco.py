"""CocoPanopticDataset: both layouts, lenient/strict handling of every kind of bad input."""

from __future__ import annotations

import json
import logging
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurogshn.data.coco import CocoPanopticDataset, safe_join
from neurogshn.data.relational.scenes import ids_to_rgb
from neurogshn.errors import DataError

CATEGORIES = [
    {"id": 1, "name": "circle", "isthing": 1, "supercategory": "shape"},
    {"id": 6, "name": "sky", "isthing": 0, "supercategory": "background"},
]


def _seg_info(ids: np.ndarray, cat_of: dict[int, int]) -> list[dict]:
    out = []
    for sid in np.unique(ids):
        if sid == 0:
            continue
        ys, xs = np.nonzero(ids == sid)
        out.append(
            {
                "id": int(sid),
                "category_id": cat_of.get(int(sid), 1),
                "iscrowd": 0,
                "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1],
                "area": len(xs),
            }
        )
    return out


def make_dataset(root: Path, records: list[dict], split: str = "val", captions=True) -> Path:
    """Write a small data set in our layout. Each record: ``id``, ``image`` (array or a PIL
    image), ``ids`` (H×W), optional ``segments_info``, ``file_name``, ``captions``."""
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / f"panoptic_{split}").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    images, anns, caps = [], [], []
    for r in records:
        fname = r.get("file_name", f"{r['id']:06d}.png")
        img = r["image"]
        if img is not None:
            im = img if isinstance(img, Image.Image) else Image.fromarray(img)
            im.save(root / "images" / split / fname)
        Image.fromarray(ids_to_rgb(r["ids"])).save(
            root / f"panoptic_{split}" / f"{r['id']:06d}.png"
        )
        h, w = r["ids"].shape
        images.append({"id": r["id"], "file_name": fname, "width": w, "height": h})
        anns.append(
            {
                "image_id": r["id"],
                "file_name": f"{r['id']:06d}.png",
                "segments_info": r.get("segments_info", _seg_info(r["ids"], {})),
            }
        )
        caps += [
            {"id": len(caps), "image_id": r["id"], "caption": c}
            for c in r.get("captions", ["a circle."])
        ]
    (root / "annotations" / f"panoptic_{split}.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": CATEGORIES})
    )
    if captions:
        (root / "annotations" / f"captions_{split}.json").write_text(
            json.dumps({"images": images, "annotations": caps})
        )
    return root


def _ids(h: int = 8, w: int = 10) -> np.ndarray:
    ids = np.full((h, w), 7, dtype=np.int64)
    ids[2:5, 3:6] = 300  # needs two bytes (G channel)
    return ids


def _rgb(h: int = 8, w: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def good(i: int = 1, **kw) -> dict:
    return {"id": i, "image": _rgb(seed=i), "ids": _ids()} | kw


# ---------------------------------------------------------------------------------------------


def test_generated_benchmark_loads(scenes_root: Path) -> None:
    ds = CocoPanopticDataset(scenes_root, "train")
    assert len(ds) == 24 and ds.skipped == [] and ds.split == "train"
    rec = ds[0]
    assert rec.image.shape == (96, 96, 3) and rec.image.dtype == np.uint8
    assert rec.segmentation.segment_map.shape == (96, 96)
    assert len(rec.captions) == 5 and ds.captions[rec.image_id] == rec.captions
    assert sum(s.area for s in rec.segmentation.segments) == 96 * 96
    assert {c["name"] for c in ds.categories.values()} >= {"circle", "sky"}
    assert all(s.id in rec.attributes for s in rec.segmentation.segments if s.is_thing)
    assert ds.get_by_image_id(ds.image_ids[3]).image_id == ds.image_ids[3]
    assert len(list(ds)) == 24
    with pytest.raises(IndexError):
        ds[24]


def _coco2017(src: Path, dst: Path, pan_under_annotations: bool = True) -> Path:
    ann = dst / "annotations"
    ann.mkdir(parents=True)
    shutil.copytree(src / "images" / "test", dst / "val2017")
    pan_dir = ann / "panoptic_val2017" if pan_under_annotations else dst / "panoptic_val2017"
    shutil.copytree(src / "panoptic_test", pan_dir)
    shutil.copy(src / "annotations" / "panoptic_test.json", ann / "panoptic_val2017.json")
    shutil.copy(src / "annotations" / "captions_test.json", ann / "captions_val2017.json")
    return dst


@pytest.mark.parametrize("under", [True, False])
def test_coco2017_layout(scenes_root: Path, tmp_path: Path, under: bool) -> None:
    coco = _coco2017(scenes_root, tmp_path / "coco", under)
    ours = CocoPanopticDataset(scenes_root, "test", strict=True)
    for split in ("val", "val2017"):
        ds = CocoPanopticDataset(coco, split, strict=True)
        assert ds.layout.name == "coco2017" and ds.image_ids == ours.image_ids
        a, b = ds[2], ours[2]
        assert np.array_equal(a.image, b.image) and a.captions == b.captions
        assert np.array_equal(a.segmentation.segment_map, b.segmentation.segment_map)
        assert a.segmentation.segments == b.segmentation.segments


def test_missing_split_names_expected_files(tmp_path: Path) -> None:
    (tmp_path / "annotations").mkdir()
    with pytest.raises(DataError, match=r"panoptic_val\.json") as e:
        CocoPanopticDataset(tmp_path, "val")
    assert "panoptic_val2017.json" in str(e.value)
    with pytest.raises(DataError, match="not a directory"):
        CocoPanopticDataset(tmp_path / "nope", "val")


def test_panoptic_only_and_missing_captions(tmp_path: Path) -> None:
    root = make_dataset(tmp_path, [good(1), good(2, captions=[])], captions=True)
    ds = CocoPanopticDataset(root, "val", strict=True)
    assert ds[0].captions == ["a circle."] and ds[1].captions == [] and ds.captions[2] == []
    root2 = make_dataset(tmp_path / "b", [good(1)], captions=False)
    ds2 = CocoPanopticDataset(root2, "val", strict=True)
    assert ds2[0].captions == [] and ds2.layout.captions_json is None


def test_segments_are_decoded_from_png(tmp_path: Path) -> None:
    root = make_dataset(tmp_path, [good(1)])
    rec = CocoPanopticDataset(root, "val", strict=True)[0]
    segs = {s.id: s for s in rec.segmentation.segments}
    assert set(segs) == {7, 300}
    assert segs[300].area == 9 and segs[300].bbox == (3.0, 2.0, 3.0, 3.0)
    assert segs[300].category == "circle" and segs[300].is_thing


@pytest.mark.parametrize("kind", ["truncated", "garbage", "empty"])
def test_corrupt_image(tmp_path: Path, kind: str, caplog) -> None:
    root = make_dataset(tmp_path, [good(1), good(2)])
    bad = root / "images" / "val" / "000002.png"
    data = bad.read_bytes()
    bad.write_bytes(
        {"truncated": data[: len(data) // 2], "garbage": b"not a png" * 9, "empty": b""}[kind]
    )
    ds = CocoPanopticDataset(root, "val")
    assert len(ds) == 2  # pixels are decoded lazily
    assert ds[0].image_id == 1
    with pytest.raises(DataError) as e:
        ds[1]
    assert e.value.path == str(bad) and "decode" in e.value.problem
    assert [s.path for s in ds.skipped] == [str(bad)]
    assert [r.image_id for r in ds] == [1]  # iteration skips it
    assert len(ds.skipped) == 1  # recorded once
    strict = CocoPanopticDataset(root, "val", strict=True)
    with pytest.raises(DataError, match="decode"):
        list(strict)


def _png16_rgb(path: Path, arr: np.ndarray) -> None:
    """Write a 16-bit-per-channel RGB PNG by hand (PIL cannot write one)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + tag
            + body
            + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def test_image_modes_become_rgb_uint8(tmp_path: Path) -> None:
    h, w = 8, 10
    gray = np.arange(h * w, dtype=np.uint8).reshape(h, w) * 3
    g16 = gray.astype(np.uint16) * 257
    rgba = np.zeros((h, w, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    rgba[0, 0] = (200, 100, 50, 0)  # fully transparent → black
    rgba[0, 1] = (200, 100, 50, 128)  # half → about half
    rgb = _rgb()
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    recs = [
        {"id": 1, "image": Image.fromarray(gray, "L"), "ids": _ids()},
        {"id": 2, "image": Image.fromarray(g16), "ids": _ids()},
        {"id": 3, "image": Image.fromarray(rgba, "RGBA"), "ids": _ids()},
        {"id": 4, "image": pal, "ids": _ids()},
        {"id": 5, "image": None, "ids": _ids()},
        {"id": 6, "image": Image.fromarray(gray, "L").convert("1"), "ids": _ids()},
    ]
    root = make_dataset(tmp_path, recs)
    rgb16 = np.clip(rgb.astype(np.int64) * 257 + 100, 0, 65535)
    _png16_rgb(root / "images" / "val" / "000005.png", rgb16)
    ds = CocoPanopticDataset(root, "val", strict=True)
    out = {r.image_id: r.image for r in ds}
    for im in out.values():
        assert im.shape == (h, w, 3) and im.dtype == np.uint8
    assert np.array_equal(out[1], np.repeat(gray[..., None], 3, 2))
    assert np.array_equal(out[2], np.repeat(gray[..., None], 3, 2))  # 16-bit scaled, not clipped
    assert tuple(out[3][0, 0]) == (0, 0, 0) and tuple(out[3][1, 1]) == (200, 0, 0)
    assert abs(int(out[3][0, 1][0]) - 100) <= 1 and abs(int(out[3][0, 1][1]) - 50) <= 1
    assert np.abs(out[4].astype(int) - rgb).mean() < 40  # palette approximation
    assert np.abs(out[5].astype(int) - rgb).max() <= 1  # 16-bit RGB → 8 bits (high byte)
    assert set(np.unique(out[6])) <= {0, 255}


def test_png_id_missing_from_segments_info(tmp_path: Path) -> None:
    ids = _ids()
    info = [s for s in _seg_info(ids, {}) if s["id"] != 300]
    root = make_dataset(tmp_path, [good(1, segments_info=info), good(2)])
    ds = CocoPanopticDataset(root, "val")
    rec = ds[0]
    assert [s.id for s in rec.segmentation.segments] == [7]
    assert (rec.segmentation.segment_map == 0).sum() == 9  # void
    assert len(ds.skipped) == 1 and "not in segments_info" in ds.skipped[0].reason
    assert ds.skipped[0].path.endswith("000001.png")
    with pytest.raises(DataError, match="not in segments_info"):
        CocoPanopticDataset(root, "val", strict=True)[0]


def test_segments_info_id_missing_from_png(tmp_path: Path) -> None:
    ids = _ids()
    info = [
        *_seg_info(ids, {}),
        {"id": 999, "category_id": 1, "iscrowd": 0, "bbox": [0, 0, 1, 1], "area": 1},
    ]
    root = make_dataset(tmp_path, [good(1, segments_info=info)])
    ds = CocoPanopticDataset(root, "val")
    rec = ds[0]
    assert {s.id for s in rec.segmentation.segments} == {7, 300}
    assert "999" in ds.skipped[0].reason and "not in the panoptic PNG" in ds.skipped[0].reason
    with pytest.raises(DataError, match="not in the panoptic PNG"):
        CocoPanopticDataset(root, "val", strict=True)[0]


def test_unknown_category_is_void(tmp_path: Path) -> None:
    ids = _ids()
    root = make_dataset(tmp_path, [good(1, segments_info=_seg_info(ids, {300: 42}))])
    ds = CocoPanopticDataset(root, "val")
    rec = ds[0]
    assert [s.id for s in rec.segmentation.segments] == [7]
    assert (rec.segmentation.segment_map == 0).sum() == 9 and "category_id 42" in str(ds.skipped[0])
    with pytest.raises(DataError, match="unknown category_id"):
        CocoPanopticDataset(root, "val", strict=True)[0]


def test_missing_files(tmp_path: Path) -> None:
    root = make_dataset(tmp_path, [good(1), good(2), good(3)])
    (root / "images" / "val" / "000002.png").unlink()
    (root / "panoptic_val" / "000003.png").unlink()
    ds = CocoPanopticDataset(root, "val")
    assert ds.image_ids == [1]
    reasons = sorted(s.reason for s in ds.skipped)
    assert reasons == ["image 2: image file not found", "image 3: panoptic PNG not found"]
    with pytest.raises(DataError, match="image file not found") as e:
        CocoPanopticDataset(root, "val", strict=True)
    assert e.value.path.endswith("000002.png")


@pytest.mark.parametrize(
    "name",
    [
        "../outside.png",
        "sub/../../outside.png",
        "/etc/hostname",
        "..\\outside.png",
        "C:\\x.png",
        "",
    ],
)
def test_file_name_escaping_root_is_refused(tmp_path: Path, name: str) -> None:
    root = make_dataset(tmp_path / "data", [good(1), good(2)])
    # a real file the escaping name would reach
    Image.fromarray(_rgb()).save(tmp_path / "data" / "images" / "outside.png")
    pan = json.loads((root / "annotations" / "panoptic_val.json").read_text())
    pan["images"][1]["file_name"] = name
    (root / "annotations" / "panoptic_val.json").write_text(json.dumps(pan))
    ds = CocoPanopticDataset(root, "val")
    assert ds.image_ids == [1]
    assert "refused" in ds.skipped[0].reason or "non-empty" in ds.skipped[0].reason
    with pytest.raises(DataError, match=r"refused|non-empty"):
        CocoPanopticDataset(root, "val", strict=True)


def test_panoptic_file_name_escaping_root_is_refused(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", [good(1)])
    pan = json.loads((root / "annotations" / "panoptic_val.json").read_text())
    pan["annotations"][0]["file_name"] = "../images/val/000001.png"
    (root / "annotations" / "panoptic_val.json").write_text(json.dumps(pan))
    ds = CocoPanopticDataset(root, "val")
    assert len(ds) == 0 and "refused" in ds.skipped[0].reason


def test_safe_join() -> None:
    base = Path("/data/images")
    assert safe_join(base, "a/b.png") == base / "a" / "b.png"
    for bad in ("../x", "/abs", "a/../../x", 5, None, "\\\\server\\x"):
        with pytest.raises(ValueError):
            safe_join(base, bad)


@pytest.mark.parametrize("which", ["panoptic", "captions"])
def test_malformed_json(tmp_path: Path, which: str) -> None:
    root = make_dataset(tmp_path, [good(1)])
    path = root / "annotations" / f"{which}_val.json"
    path.write_text('{"images": [\n  {"id": 1,, }\n]}')
    for strict in (False, True):
        with pytest.raises(DataError) as e:
            CocoPanopticDataset(root, "val", strict=strict)
        assert e.value.path == str(path)
        assert "line 2, column" in e.value.problem and "malformed JSON" in e.value.problem


def test_wrong_json_structure(tmp_path: Path) -> None:
    root = make_dataset(tmp_path, [good(1)])
    path = root / "annotations" / "panoptic_val.json"
    path.write_text("[1, 2]")
    with pytest.raises(DataError, match="top level"):
        CocoPanopticDataset(root, "val")
    path.write_text(json.dumps({"images": [], "annotations": {}, "categories": []}))
    with pytest.raises(DataError, match='"annotations"'):
        CocoPanopticDataset(root, "val")


def test_bad_records_in_json(tmp_path: Path, caplog) -> None:
    root = make_dataset(tmp_path, [good(1), good(2), good(3)])
    pan = json.loads((root / "annotations" / "panoptic_val.json").read_text())
    pan["images"][1] = {"file_name": "x.png"}  # no id
    pan["images"].append(dict(pan["images"][0]))  # duplicate id
    pan["annotations"].append({"image_id": 77, "segments_info": []})  # no such image
    (root / "annotations" / "panoptic_val.json").write_text(json.dumps(pan))
    caps = json.loads((root / "annotations" / "captions_val.json").read_text())
    caps["annotations"].append({"image_id": 1, "caption": 5})
    (root / "annotations" / "captions_val.json").write_text(json.dumps(caps))
    with caplog.at_level(logging.WARNING):
        ds = CocoPanopticDataset(root, "val")
    assert ds.image_ids == [1, 3]
    text = "\n".join(map(str, ds.skipped))
    assert "images[1]" in text and "duplicate image id 1" in text and "image 77" in text
    assert "caption text" in text and "annotation for image 2, which is not in images" in text
    assert "skipped" in caplog.text
    with pytest.raises(DataError, match=r"images\[1\]"):
        CocoPanopticDataset(root, "val", strict=True)


def test_size_mismatch(tmp_path: Path) -> None:
    root = make_dataset(tmp_path, [good(1, image=_rgb(9, 10))])
    with pytest.raises(DataError, match="panoptic PNG is 10×8 but the image"):
        CocoPanopticDataset(root, "val")[0]


def test_panoptic_png_must_be_rgb(tmp_path: Path) -> None:
    root = make_dataset(tmp_path, [good(1)])
    Image.fromarray(np.zeros((8, 10), np.uint8)).save(root / "panoptic_val" / "000001.png")
    with pytest.raises(DataError, match="8-bit RGB"):
        CocoPanopticDataset(root, "val")[0]


def test_image_without_segments(tmp_path: Path) -> None:
    root = make_dataset(tmp_path, [good(1, ids=np.zeros((8, 10), np.int64), segments_info=[])])
    ds = CocoPanopticDataset(root, "val", strict=True)
    rec = ds[0]
    assert rec.segmentation.segments == [] and not rec.segmentation.segment_map.any()
    assert rec.segmentation.masks().shape == (0, 8, 10)


def test_image_with_many_segments(tmp_path: Path) -> None:
    h, w = 40, 48
    ids = (np.arange(h)[:, None] // 2) * (w // 2) + (np.arange(w)[None, :] // 2) + 1
    ids = ids * 4099  # spread over all three bytes
    assert len(np.unique(ids)) == 480
    root = make_dataset(tmp_path, [good(1, image=_rgb(h, w), ids=ids)])
    rec = CocoPanopticDataset(root, "val", strict=True)[0]
    segs = rec.segmentation.segments
    assert len(segs) == 480 and all(s.area == 4 for s in segs)
    last = max(segs, key=lambda s: s.id)
    assert last.id == ids.max() and last.bbox == (46.0, 38.0, 2.0, 2.0)
    assert np.array_equal(rec.segmentation.segment_map, ids)
