"""A fine-tuned task checkpoint on disk: backbone (``GSHN.save_pretrained``), head weights and
``task.json``, written atomically, read back with every file checked (layout in
:mod:`neurogshn.tasks.finetune`; the resume state in :mod:`neurogshn.tasks.finetune_state`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from neurogshn.errors import CheckpointError
from neurogshn.graph.config import GraphConfig
from neurogshn.tasks.finetune_state import (
    HEAD_WEIGHTS_FILE,
    TASK_FILE,
    FinetuneTrainingState,
    save_head_weights,
    write_state_files,
)
from neurogshn.tasks.heads import TaskHead, TaskHeadConfig, TaskModel
from neurogshn.utils.io import atomic_path
from neurogshn.utils.runtime import resolve_device
from neurogshn.utils.weights import read_safetensors

TASK_FORMAT = "neurogshn-task-checkpoint"


def save_task_checkpoint(
    model: TaskModel,
    directory: str | Path,
    graph_spec: GraphConfig | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write backbone + head + ``task.json`` atomically into ``directory`` (replacing it)."""
    return write_task_checkpoint(model, Path(directory), graph_spec, extra, state=None)


def write_task_checkpoint(
    model: TaskModel,
    directory: Path,
    graph_spec: GraphConfig | None,
    extra: Mapping[str, Any] | None,
    state: FinetuneTrainingState | None,
) -> Path:
    """The whole output directory, atomically; with the resume state when ``state`` is
    given (written last, so ``trainer.json`` can record every other file's digest)."""
    with atomic_path(directory) as tmp:
        tmp.mkdir(parents=True)
        model.backbone.save_pretrained(tmp)
        save_head_weights(model, tmp)
        meta = {
            "format": TASK_FORMAT,
            "version": 1,
            "task": model.config.task,
            "head": model.config.to_dict(),
            "graph": asdict(graph_spec or GraphConfig()),
            **dict(extra or {}),
        }
        (tmp / TASK_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        if state is not None:
            write_state_files(tmp, state)
    return directory


def read_task_json(directory: str | Path) -> dict[str, Any]:
    """``task.json`` of a fine-tuned checkpoint (CheckpointError when absent or bad)."""
    from neurogshn.training.checkpoint import load_json_object

    path = Path(directory) / TASK_FILE
    meta = load_json_object(
        path, "no task.json: not a fine-tuned task checkpoint (run `neurogshn finetune`)"
    )
    if meta.get("format") != TASK_FORMAT:
        raise CheckpointError(path, f"not a {TASK_FORMAT} file")
    return meta


def load_task_checkpoint(
    directory: str | Path, device: torch.device | str | None = None
) -> tuple[TaskModel, dict[str, Any]]:
    """Load backbone and head of a fine-tuned checkpoint; returns ``(model, task.json)``.

    Raises:
        CheckpointError: a missing/corrupt file or head weights that do not fit the head
            config (missing, unexpected or mis-shaped tensors), naming the file.
    """

    from neurogshn.model.gshn import GSHN

    directory = Path(directory)
    meta = read_task_json(directory)
    try:
        head_cfg = TaskHeadConfig.from_dict(meta["head"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(directory / TASK_FILE, f"bad head config ({exc})") from exc
    dev = resolve_device(device)
    backbone = GSHN.from_pretrained(directory, device=dev)
    head = TaskHead(head_cfg)
    path = directory / HEAD_WEIGHTS_FILE
    state = read_safetensors(path, "head weights missing")
    expected = head.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    bad_shape = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or bad_shape:
        raise CheckpointError(
            path,
            f"head weights do not match task.json (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}, wrong shape {bad_shape[:3]})",
        )
    head.load_state_dict(state)
    return TaskModel(backbone, head.to(dev)).eval(), meta
