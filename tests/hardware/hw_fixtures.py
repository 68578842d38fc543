"""Helpers shared by the hardware tests (imported by name; prepend import mode)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from neurogshn.model.spiking import SpikingEncoder


def make_encoder(seed: int = 0, sizes=(24, 16), in_features: int = 12, steps: int = 6):
    torch.manual_seed(seed)
    return SpikingEncoder(in_features, sizes, time_steps=steps).eval()


def node_inputs(n: int = 10, f: int = 12, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, f))


def encoder_checkpoint(directory: Path, encoder: SpikingEncoder) -> Path:
    from neurogshn.hardware.source import save_encoder_checkpoint

    return save_encoder_checkpoint(encoder, directory)
