"""Task files (VQA, VE, NLVR2) read into typed examples, and their batches.

The schemas are in docs/data.md; a malformed item is skipped with its reason (or, with
``strict``, refused by a :class:`~neurogshn.errors.DataError` naming the file).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from neurogshn.errors import DataError

NLVR2_LABELS = ["False", "True"]


@dataclass(frozen=True)
class TaskExample:
    """One example of a classification task.

    Args:
        id: question / item id from the task file.
        image_ids: the image(s) (two for NLVR2: left, right).
        text: question or statement.
        label: index into the task's label vocabulary.
        group: reporting group: the item's ``type`` field where the task file gives one (VQA
            question type, NLVR2 statement form); ``None`` otherwise (VE, and items without a
            type, which are reported together, in the overall accuracy only).
        answer: the reference answer / label as text (kept for answers outside the head's
            vocabulary, whose ``label`` is ``-1``: they always count as wrong).
    """

    id: Any
    image_ids: tuple[int, ...]
    text: str
    label: int
    group: str | None = None
    answer: str | None = None


def task_file(root: str | Path, task: str, split: str) -> Path:
    """``root/annotations/{task}_{split}.json`` (``hard_negatives`` for retrieval)."""
    return Path(root) / "annotations" / f"{task}_{split}.json"


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError(path, "task file not found (see docs/data.md for the schema)")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"not valid JSON ({exc})") from exc


def _require(path: Path, item: Any, keys: Sequence[str], where: str) -> None:
    if not isinstance(item, Mapping):
        raise DataError(path, f"{where}: expected an object, got {type(item).__name__}")
    missing = [k for k in keys if k not in item]
    if missing:
        raise DataError(path, f"{where}: missing field(s) {', '.join(missing)}")


def load_task_examples(
    root: str | Path,
    task: str,
    split: str,
    labels: Sequence[str] | None = None,
    strict: bool = False,
) -> tuple[list[str], list[TaskExample], list[str]]:
    """Read a VQA / VE / NLVR2 task file into examples.

    Args:
        root: data set root; the file is ``root/annotations/{task}_{split}.json``.
        task: ``vqa``, ``ve`` or ``nlvr2``.
        split: split name.
        labels: the label vocabulary to use (a fine-tuned head's); ``None`` takes the file's.
            With a given vocabulary, an item whose answer is outside it is kept with
            ``label = -1`` (it counts as wrong: the head cannot produce that answer).
        strict: raise on the first bad item instead of skipping it.

    Returns:
        ``(labels, examples, skipped)`` with ``skipped`` one reason per item left out (a
        malformed item, or an answer outside the file's own vocabulary).
    """
    path = task_file(root, task, split)
    data = _read_json(path)
    skipped: list[str] = []

    def bad(reason: str) -> None:
        if strict:
            raise DataError(path, reason)
        skipped.append(reason)

    if task == "vqa":
        _require(path, data, ["answers", "questions"], "top level")
        vocab = list(labels) if labels is not None else [str(a) for a in data["answers"]]
        items, keys = data["questions"], ["question_id", "image_id", "question", "answer"]
    elif task == "ve":
        _require(path, data, ["labels", "items"], "top level")
        vocab = list(labels) if labels is not None else [str(a) for a in data["labels"]]
        items, keys = data["items"], ["id", "image_id", "statement", "label"]
    elif task == "nlvr2":
        _require(path, data, ["items"], "top level")
        vocab = list(labels) if labels is not None else list(NLVR2_LABELS)
        items, keys = data["items"], ["id", "left_image_id", "right_image_id", "statement", "label"]
    else:
        raise ValueError(f"unknown task {task!r}")
    index = {a: i for i, a in enumerate(vocab)}
    examples: list[TaskExample] = []
    for n, item in enumerate(items):
        try:
            _require(path, item, keys, f"item {n}")
        except DataError as exc:
            bad(exc.problem)
            continue
        if task == "vqa":
            answer, text, images = str(item["answer"]), item["question"], (item["image_id"],)
            group, ident = item.get("type"), item["question_id"]
        elif task == "ve":
            answer, text, images = str(item["label"]), item["statement"], (item["image_id"],)
            group, ident = None, item["id"]
        else:
            if not isinstance(item["label"], bool):
                bad(f"item {n}: label must be true/false, got {item['label']!r}")
                continue
            answer, text = str(item["label"]), item["statement"]
            images = (item["left_image_id"], item["right_image_id"])
            group, ident = item.get("type"), item["id"]
            if group is not None and not isinstance(group, str):
                bad(f"item {n}: type must be text or null, got {group!r}")
                continue
        if answer not in index and labels is None:
            bad(f"item {n}: answer {answer!r} is not in the label vocabulary")
            continue
        try:
            image_ids = tuple(int(i) for i in images)
        except (TypeError, ValueError):
            bad(f"item {n}: image ids must be integers, got {images!r}")
            continue
        examples.append(
            TaskExample(ident, image_ids, str(text), index.get(answer, -1), group, answer)
        )
    return vocab, examples, skipped


def filter_examples(
    examples: Sequence[TaskExample], available: Callable[[int], bool]
) -> tuple[list[TaskExample], int]:
    """Keep examples whose images all have graphs; returns ``(kept, number dropped)``."""
    kept = [e for e in examples if all(available(i) for i in e.image_ids)]
    return kept, len(examples) - len(kept)


def make_batch(
    examples: Sequence[TaskExample], get_graph: Callable[[int], Any], device: torch.device
) -> tuple[list[Any], list[str], Tensor]:
    """``(graph batches per image slot, texts, labels)`` for a list of examples."""
    from torch_geometric.data import Batch

    slots = len(examples[0].image_ids)
    graphs = [
        Batch.from_data_list([get_graph(e.image_ids[s]) for e in examples]).to(device)
        for s in range(slots)
    ]
    if any(e.label < 0 for e in examples):
        raise ValueError("an example's answer is outside the label vocabulary (label -1)")
    labels = torch.tensor([e.label for e in examples], dtype=torch.long, device=device)
    return graphs, [e.text for e in examples], labels
