"""Pretraining engine: configuration, batches, checkpoints, the training loop, DDP plumbing.

- :mod:`~neurogshn.training.config`: :class:`TrainConfig` (JSON round-trip, ``--set`` overrides)
- :mod:`~neurogshn.training.data`: :class:`PretrainingData` (images + caption + hard negative)
- :mod:`~neurogshn.training.checkpoint`: :class:`CheckpointManager` (pickle-free, atomic)
- :mod:`~neurogshn.training.trainer`: :class:`Trainer` (AdamW, warm-up + cosine, exact resume)
- :mod:`~neurogshn.training.distributed`: torchrun / DDP helpers

The job that composes them with data generation and evaluation is
:mod:`neurogshn.jobs.pretrain`. See docs/training.md.
"""

from neurogshn.training.checkpoint import CheckpointManager, TrainingCheckpoint
from neurogshn.training.config import TrainConfig
from neurogshn.training.data import PretrainingData, PretrainItemSource
from neurogshn.training.trainer import Trainer, TrainResult

__all__ = [
    "CheckpointManager",
    "PretrainItemSource",
    "PretrainingData",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingCheckpoint",
]
