"""Segmenters: gt, superpixel, detectron2 conversion, registry, the shared map converter."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from neurogshn.errors import ConfigError
from neurogshn.segmentation import (
    PanopticSegmentation,
    Segment,
    SegmentInfo,
    get_segmenter,
    segment_record,
    segmentation_from_map,
)
from neurogshn.segmentation.detectron2 import Detectron2Segmenter, convert_detectron2_panoptic


def check_contract(seg: PanopticSegmentation, shape: tuple[int, int]) -> None:
    assert seg.segment_map.shape == shape
    ids = [s.id for s in seg.segments]
    assert len(set(ids)) == len(ids) and all(i > 0 for i in ids)
    present = set(np.unique(seg.segment_map).tolist()) - {0}
    assert present == set(ids)
    for s in seg.segments:
        mask = seg.segment_map == s.id
        assert s.area == int(mask.sum())
        ys, xs = np.nonzero(mask)
        assert s.bbox == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        assert 0.0 <= s.score <= 1.0


def test_segmentation_from_map_drops_unknown_and_absent_ids() -> None:
    m = np.array([[0, 5, 5], [7, 7, 9], [7, 7, 9]])
    seg = segmentation_from_map(
        m,
        {
            5: SegmentInfo("circle", True, 0.9),
            7: SegmentInfo("sky", False),
            3: SegmentInfo("x", True),
        },
    )
    assert [s.id for s in seg.segments] == [5, 7]
    assert seg.segment_map[1, 2] == 0  # id 9 had no metadata -> void
    assert seg.segments[0] == Segment(5, "circle", True, 0.9, 2, (1.0, 0.0, 2.0, 1.0))
    assert seg.segments[1].bbox == (0.0, 1.0, 2.0, 2.0) and seg.segments[1].area == 4
    check_contract(seg, (3, 3))


def test_superpixel_segmenter_covers_image() -> None:
    rng = np.random.default_rng(0)
    img = np.zeros((48, 64, 3), np.uint8)
    img[:, 32:] = 200
    img = (img + rng.integers(0, 20, img.shape)).astype(np.uint8)
    seg = get_segmenter("superpixel", n_segments=12, sigma=0.0)(img)
    check_contract(seg, (48, 64))
    assert (seg.segment_map > 0).all()  # SLIC leaves no void
    assert 4 <= len(seg.segments) <= 30
    assert all(s.category is None and not s.is_thing for s in seg.segments)
    # Superpixels follow the sharp vertical colour edge at x = 32 (no pre-smoothing).
    for s in seg.segments:
        cols = np.nonzero(seg.segment_map == s.id)[1]
        left = (cols < 32).mean()
        assert left in (0.0, 1.0)


def test_gt_segmenter_reads_record_not_pixels() -> None:
    seg = segmentation_from_map(
        np.array([[1, 2]]), {1: SegmentInfo("a", True), 2: SegmentInfo("b", False)}
    )
    record = SimpleNamespace(image=np.zeros((1, 2, 3), np.uint8), segmentation=seg)
    gt = get_segmenter("gt")
    assert segment_record(gt, record) is seg
    with pytest.raises(ConfigError):
        gt(record.image)
    with pytest.raises(ConfigError):
        segment_record(gt, SimpleNamespace(image=record.image))


def test_registry_rejects_unknown_names_and_missing_options() -> None:
    with pytest.raises(ConfigError, match="unknown segmenter"):
        get_segmenter("nope")
    with pytest.raises(ConfigError, match="model_dir"):
        get_segmenter("transformers")
    with pytest.raises(ConfigError, match="not installable"):
        get_segmenter("detectron2")


METADATA = SimpleNamespace(
    thing_classes=["person", "dog"],
    stuff_classes=["things", "sky", "grass"],
    label_divisor=1000,
    thing_dataset_id_to_contiguous_id={1: 0, 18: 1},
)


def test_detectron2_conversion_with_segments_info() -> None:
    # Documented format: ids from 1, category_id indexes thing_classes / stuff_classes.
    pred = torch.tensor([[1, 1, 2, 0], [1, 1, 2, 3], [4, 4, 4, 3]], dtype=torch.int32)
    info = [
        {"id": 1, "isthing": True, "category_id": 1, "score": 0.8, "instance_id": 0},
        {"id": 2, "isthing": True, "category_id": 0, "score": 0.6, "instance_id": 1},
        {"id": 3, "isthing": False, "category_id": 1, "area": 2},
        {"id": 4, "isthing": False, "category_id": 2, "area": 3},
    ]
    seg = convert_detectron2_panoptic((pred, info), METADATA)
    check_contract(seg, (3, 4))
    by_cat = {s.category: s for s in seg.segments}
    assert set(by_cat) == {"dog", "person", "sky", "grass"}
    assert by_cat["dog"].is_thing and by_cat["dog"].score == pytest.approx(0.8)
    assert by_cat["dog"].area == 4 and by_cat["person"].area == 2
    assert not by_cat["sky"].is_thing and by_cat["sky"].score == 1.0
    assert by_cat["grass"].area == 3
    assert seg.segment_map[0, 3] == 0  # pixel 0 not in segments_info: void


def test_detectron2_conversion_keeps_segment_id_zero() -> None:
    pred = np.array([[0, 0], [5, 5]])
    info = [
        {"id": 0, "isthing": False, "category_id": 1},
        {"id": 5, "isthing": True, "category_id": 0},
    ]
    seg = convert_detectron2_panoptic((pred, info), METADATA)
    assert [s.category for s in seg.segments] == ["sky", "person"]
    assert (seg.segment_map > 0).all()


def test_detectron2_conversion_without_segments_info() -> None:
    # pixel = category * label_divisor + instance; -1 = void.
    pred = np.array([[1000, 1000, 2000], [-1, 1001, 2000]])
    seg = convert_detectron2_panoptic((pred, None), METADATA)
    check_contract(seg, (2, 3))
    cats = [(s.category, s.is_thing, s.area) for s in seg.segments]
    assert cats == [("dog", True, 2), ("dog", True, 1), ("grass", False, 2)]
    assert seg.segment_map[1, 0] == 0


def test_detectron2_segmenter_passes_bgr_and_converts() -> None:
    seen = {}

    def predictor(img: np.ndarray) -> dict:
        seen["img"] = img
        return {
            "panoptic_seg": (
                torch.ones(2, 2, dtype=torch.int32),
                [{"id": 1, "isthing": False, "category_id": 1}],
            )
        }

    img = np.zeros((2, 2, 3), np.uint8)
    img[..., 0] = 255  # red in RGB
    seg = Detectron2Segmenter(predictor, METADATA)(img)
    assert seen["img"][0, 0, 2] == 255 and seen["img"][0, 0, 0] == 0
    assert seg.segments[0].category == "sky" and seg.segments[0].area == 4
