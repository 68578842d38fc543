"""``transformers`` segmenter: a tiny random Mask2Former saved locally and loaded back."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from neurogshn.errors import InputFileError
from neurogshn.segmentation import get_segmenter

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ID2LABEL = {0: "circle", 1: "square", 2: "sky", 3: "grass"}


@pytest.fixture(scope="module")
def tiny_mask2former(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import (
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        SwinConfig,
    )
    from transformers.models.mask2former.image_processing_pil_mask2former import (
        Mask2FormerImageProcessorPil,
    )

    swin = SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        window_size=4,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    cfg = Mask2FormerConfig(
        backbone_config=swin,
        hidden_dim=32,
        mask_feature_size=32,
        feature_size=32,
        encoder_layers=1,
        decoder_layers=2,
        num_queries=8,
        encoder_feedforward_dim=64,
        dim_feedforward=64,
        num_attention_heads=2,
        id2label=ID2LABEL,
        label2id={v: k for k, v in ID2LABEL.items()},
        num_labels=len(ID2LABEL),
    )
    torch.manual_seed(0)
    model = Mask2FormerForUniversalSegmentation(cfg).eval()
    out = tmp_path_factory.mktemp("m2f")
    model.save_pretrained(out)
    Mask2FormerImageProcessorPil(size={"height": 64, "width": 64}).save_pretrained(out)
    return out


def test_tiny_mask2former_through_segmenter(tiny_mask2former: Path) -> None:
    seg_fn = get_segmenter(
        "transformers",
        model_dir=tiny_mask2former,
        device="cpu",
        threshold=0.0,
        mask_threshold=0.01,
        overlap_mask_area_threshold=0.0,
        thing_ids=["circle", "square"],
    )
    img = (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)
    seg = seg_fn(img)
    assert seg.segment_map.shape == (50, 70)
    assert len(seg.segments) >= 1  # random weights + low thresholds still give segments
    present = set(np.unique(seg.segment_map).tolist()) - {0}
    assert present == {s.id for s in seg.segments}
    for s in seg.segments:
        assert s.category in ID2LABEL.values()
        assert s.is_thing == (s.category in {"circle", "square"})
        assert s.area == int((seg.segment_map == s.id).sum())
        assert 0.0 <= s.score <= 1.0
    # Batched call agrees with single calls and handles different sizes.
    segs = seg_fn.segment_batch([img, img[:30, :40]])
    assert segs[0].segment_map.shape == (50, 70) and segs[1].segment_map.shape == (30, 40)
    np.testing.assert_array_equal(segs[0].segment_map, seg.segment_map)
    cfg = seg_fn.config()
    assert cfg["threshold"] == 0.0 and cfg["weights"]


def test_high_threshold_gives_valid_empty_segmentation(tiny_mask2former: Path) -> None:
    seg_fn = get_segmenter("transformers", model_dir=tiny_mask2former, device="cpu", threshold=1.0)
    seg = seg_fn(np.zeros((20, 24, 3), np.uint8))
    assert seg.segments == [] and seg.segment_map.shape == (20, 24)
    assert (seg.segment_map == 0).all()


def test_missing_model_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"config\.json"):
        get_segmenter("transformers", model_dir=tmp_path)


def test_transformers_segmenter_through_graph_cache(
    tiny_mask2former: Path, scenes_root: Path, tmp_path: Path
) -> None:
    from neurogshn.graph import build_graph_cache

    seg_fn = get_segmenter(
        "transformers",
        model_dir=tiny_mask2former,
        device="cpu",
        threshold=0.0,
        mask_threshold=0.01,
        overlap_mask_area_threshold=0.0,
    )
    res = build_graph_cache(
        scenes_root, "val", segmenter=seg_fn, cache_dir=tmp_path, progress=False, device="cpu"
    )
    assert res.built and len(res.dataset) == 8
    assert res.path.name.startswith("val-transformers-efficientnet_lite0-panoptic-full-")
    for g in res.dataset:
        assert g.num_nodes >= 2  # at least one predicted segment + the global node
    # The model's label names that are in the data set vocabulary map to their slot.
    vocab = res.dataset.layout.categories
    cats = {vocab[c] for g in res.dataset for c in g.node_category[1:].tolist() if c < len(vocab)}
    assert cats <= {"circle", "square", "sky", "grass"}
    again = build_graph_cache(
        scenes_root, "val", segmenter=seg_fn, cache_dir=tmp_path, progress=False, device="cpu"
    )
    assert not again.built
