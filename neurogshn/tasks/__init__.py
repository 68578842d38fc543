"""Downstream tasks: retrieval evaluation, VQA / visual entailment / NLVR2 heads, fine-tuning.

Metric definitions (protocol, tie handling) are in :mod:`neurogshn.tasks.metrics` and
docs/tasks.md. Heavier pieces (heads, fine-tuning, checkpoint evaluation) live in
:mod:`neurogshn.tasks.heads`, :mod:`neurogshn.tasks.finetune` and
:mod:`neurogshn.tasks.evaluate`.
"""

from neurogshn.tasks.metrics import (
    hard_negative_metrics,
    nlvr2_accuracy,
    retrieval_metrics,
    retrieval_ranks,
    ve_accuracy,
    vqa_accuracy,
)
from neurogshn.tasks.retrieval import evaluate_retrieval

__all__ = [
    "evaluate_retrieval",
    "hard_negative_metrics",
    "nlvr2_accuracy",
    "retrieval_metrics",
    "retrieval_ranks",
    "ve_accuracy",
    "vqa_accuracy",
]
