"""EfficientNet-Lite0 backbone: real ImageNet weights, multi-scale maps, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurogshn.errors import ConfigError
from neurogshn.features import get_backbone


@pytest.fixture(scope="module")
def backbone():
    return get_backbone("efficientnet_lite0", device="cpu")


def test_stage_shapes_and_dims(backbone) -> None:
    assert [s.stride for s in backbone.stages] == [8, 16, 32]
    assert [s.channels for s in backbone.stages] == [40, 112, 320]
    assert backbone.feature_dim == 472
    maps = backbone(torch.rand(2, 3, 100, 72))
    assert [tuple(m.shape) for m in maps] == [(2, 40, 13, 9), (2, 112, 7, 5), (2, 320, 4, 3)]
    assert not any(p.requires_grad for p in backbone.parameters())
    backbone.train()
    assert not backbone.training  # stays frozen (BatchNorm keeps ImageNet statistics)


def test_batched_equals_single(backbone) -> None:
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    batched = backbone.encode_numpy(imgs)
    single = backbone.encode_numpy([imgs[1]])
    for b, s in zip(batched, single):
        torch.testing.assert_close(b[1], s[0], atol=1e-4, rtol=1e-4)


def test_imagenet_weights_recognise_the_cat(backbone) -> None:
    from skimage.data import chelsea

    x = torch.from_numpy(chelsea()).permute(2, 0, 1)[None].float() / 255
    x = torch.nn.functional.interpolate(x, (224, 224), mode="bilinear", align_corners=False)
    top = backbone.classify(x).argmax(-1).item()
    assert top in range(281, 286)  # ImageNet domestic cat classes (tabby … Egyptian cat)


def test_unknown_backbone() -> None:
    with pytest.raises(ConfigError, match="unknown backbone"):
        get_backbone("resnet9000")
