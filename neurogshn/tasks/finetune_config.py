"""The hyper-parameters of a fine-tuning run (:func:`neurogshn.tasks.finetune.finetune`), a
typed record saved in ``task.json`` and compared on resume
(:mod:`neurogshn.tasks.finetune_state`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FinetuneConfig:
    """Fine-tuning hyper-parameters.

    Args:
        epochs: passes over the training examples.
        batch_size: examples per step.
        lr: learning rate of the head.
        backbone_lr: learning rate of the backbone (``0`` freezes it).
        weight_decay: AdamW weight decay.
        grad_clip: global gradient-norm clip (``0``: none).
        seed: example order and head initialisation.
        head: head sizes (``heads``, ``layers``, ``hidden``, ``dropout``).
        checkpoint_every: write the resume state (``out/resume/``) every this many optimizer
            steps, counted over the whole run (``0``: only at the end of every epoch, which
            always writes one).
    """

    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    backbone_lr: float = 1e-4
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    head: dict[str, Any] = field(default_factory=dict)
    checkpoint_every: int = 200

    def __post_init__(self) -> None:
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
