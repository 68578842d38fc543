"""Node features: pooled visual columns, geometry, colour, category, flags by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurogshn.features import FeatureLayout, build_regions, node_features
from neurogshn.features.regions import box_cell_weights, label_cell_weights, patch_regions
from neurogshn.segmentation import SegmentInfo, segmentation_from_map


def scene():
    """8×8 image: segment 3 (left half, 'sky'), segment 7 (a 2×2 'circle'), one pixel
    segment 9 (unknown category 'blob'), void elsewhere."""
    m = np.zeros((8, 8), np.int64)
    m[:, :4] = 3
    m[4:6, 5:7] = 7
    m[0, 7] = 9
    seg = segmentation_from_map(
        m,
        {
            3: SegmentInfo("sky", False),
            7: SegmentInfo("circle", True),
            9: SegmentInfo("blob", True),
        },
    )
    img = np.zeros((8, 8, 3), np.uint8)
    img[:, :4] = (0, 0, 255)
    img[4:6, 5:7] = (255, 0, 0)
    img[5, 6] = (255, 255, 0)
    img[0, 7] = (10, 20, 30)
    return img, seg


def fake_maps():
    # Stage 1: stride 4 -> 2×2 cells, 1 channel, cell value = cell number.
    # Stage 2: stride 8 -> 1×1 cell, 2 channels.
    return [torch.tensor([[[0.0, 1.0], [2.0, 3.0]]]), torch.tensor([[[5.0]], [[-1.0]]])], [4, 8]


LAYOUT = FeatureLayout(visual_dim=3, categories=("circle", "square", "sky"), stage_dims=(1, 2))


def test_layout_slices_are_contiguous_and_named() -> None:
    sl = LAYOUT.slices
    assert sl["visual"] == slice(0, 3)
    assert sl["geometry"] == slice(3, 10)
    assert sl["color"] == slice(10, 13)
    assert sl["category"] == slice(13, 17)
    assert sl["flags"] == slice(17, 19)
    assert LAYOUT.dim == 19 == len(LAYOUT.column_names())
    assert LAYOUT.column_names()[16] == "category=unknown"
    assert FeatureLayout.from_dict(LAYOUT.to_dict()) == LAYOUT


def test_node_features_match_hand_computed_values() -> None:
    img, seg = scene()
    maps, strides = fake_maps()
    regions = build_regions(seg, "panoptic")
    x = node_features(img, regions, maps, strides, LAYOUT)
    sl = LAYOUT.slices
    assert x.shape == (4, 19)
    # Visual: sky covers cells 0 and 2 fully -> mean(0, 2) = 1; circle lies in cell 3;
    # the one-pixel blob at (row 0, col 7) lies in cell 1.
    torch.testing.assert_close(x[1:, 0], torch.tensor([1.0, 3.0, 1.0]))
    torch.testing.assert_close(x[1:, 1:3], torch.tensor([[5.0, -1.0]] * 3))
    torch.testing.assert_close(x[0, 0:3], torch.tensor([1.5, 5.0, -1.0]))  # global = mean
    # Geometry (x, y, w, h, cx, cy, area) in [0, 1].
    torch.testing.assert_close(
        x[1, sl["geometry"]], torch.tensor([0.0, 0.0, 0.5, 1.0, 0.25, 0.5, 0.5])
    )
    torch.testing.assert_close(
        x[2, sl["geometry"]], torch.tensor([5 / 8, 4 / 8, 2 / 8, 2 / 8, 6 / 8, 5 / 8, 4 / 64])
    )
    torch.testing.assert_close(
        x[3, sl["geometry"]], torch.tensor([7 / 8, 0.0, 1 / 8, 1 / 8, 7.5 / 8, 0.5 / 8, 1 / 64])
    )
    torch.testing.assert_close(x[0, sl["geometry"]], torch.tensor([0, 0, 1, 1, 0.5, 0.5, 1.0]))
    # Colour: mean RGB of the segment's pixels.
    torch.testing.assert_close(x[1, sl["color"]], torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(x[2, sl["color"]], torch.tensor([1.0, 0.25, 0.0]))
    torch.testing.assert_close(x[3, sl["color"]], torch.tensor([10, 20, 30]) / 255.0)
    # Category one-hot: sky -> slot 2, circle -> slot 0, unseen 'blob' -> unknown slot 3.
    cat = x[:, sl["category"]]
    assert cat[0].sum() == 0
    assert cat[1].argmax() == 2 and cat[2].argmax() == 0 and cat[3].argmax() == 3
    assert (cat[1:].sum(1) == 1).all()
    # Flags: is_global, is_thing.
    torch.testing.assert_close(
        x[:, sl["flags"]], torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    )


def test_box_regions_pool_the_box() -> None:
    img, seg = scene()
    maps, strides = fake_maps()
    x = node_features(img, build_regions(seg, "boxes"), maps, strides, LAYOUT)
    # Circle box == its mask here; the sky box is the left half too; colour is box mean.
    torch.testing.assert_close(x[1:3, 0], torch.tensor([1.0, 3.0]))
    torch.testing.assert_close(x[2, LAYOUT.slices["color"]], torch.tensor([1.0, 0.25, 0.0]))


def test_cell_weights_are_exact_pixel_counts() -> None:
    lab = torch.full((10, 10), -1)
    lab[0:3, 0:5] = 0  # 3×5 block: cells (stride 4, 3×3 map): (0,0) 12 px, (0,1) 3 px
    w = label_cell_weights(lab, 1, 4, 3, 3)
    assert w.view(3, 3)[0].tolist() == [12.0, 3.0, 0.0] and w.sum() == 15
    bw = box_cell_weights(torch.tensor([[0.0, 0.0, 5.0, 3.0]]), 4, 3, 3)
    torch.testing.assert_close(bw, w)


def test_patch_regions_tile_the_image() -> None:
    r = patch_regions(30, 40, 4)
    assert len(r) == 16
    assert r.areas.sum() == 30 * 40
    np.testing.assert_allclose(r.boxes_norm[:, 2:].sum(0), [4 * 1.0, 4 * 1.0], rtol=1e-9)
    assert r.categories == [None] * 16 and (r.segment_ids == -1).all()
    with pytest.raises(ValueError):
        patch_regions(30, 40, 0)
