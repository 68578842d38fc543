"""Loaders of the task and hard-negative files in ``root/annotations/`` (docs/data.md).

Each loader returns a typed file object with ``items`` (typed records), the file's label
vocabulary where it has one, and ``skipped`` (a list of
:class:`~neurogshn.data.coco.SkippedRecord`). A file that cannot be read or does not have the
documented top-level structure raises :class:`~neurogshn.errors.DataError` naming the file and
the problem (in both modes). A malformed item, or an item whose image id is not in
``image_ids`` (when given), is skipped with the reason in lenient mode and raises
``DataError`` in strict mode.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurogshn.data.coco import SkippedRecord, load_json
from neurogshn.errors import DataError

log = logging.getLogger(__name__)

TASKS: tuple[str, ...] = ("vqa", "ve", "nlvr2")


#: Fields of a hard-negative item that are not negatives.
HARD_NEGATIVE_ITEM_FIELDS: tuple[str, ...] = ("image_id", "caption_index", "caption", "caption_id")


@dataclass(frozen=True)
class HardNegativeItem:
    """The hard negatives of one caption.

    Attributes:
        image_id: the image.
        caption_index: which of the image's captions (file order).
        caption: the caption.
        kinds: ``{kind: negative text or None}``; every other field of the file's item is a
            kind (``relation_swap``, ``attribute_swap``, a user's own ``negation`` …), so the
            metric names follow the file, not a list of ours.
        caption_id: the caption's annotation id when the file gives it.
    """

    image_id: int
    caption_index: int
    caption: str
    kinds: Mapping[str, str | None] = field(default_factory=dict)
    caption_id: int | None = None

    def negatives(self) -> dict[str, str]:
        """``{kind: text}`` of the non-null negatives, in file order."""
        return {k: v for k, v in self.kinds.items() if v is not None}


def item_negatives(item: Any) -> dict[str, str]:
    """``{kind: text}`` of the non-null negatives of a hard-negative item.

    Args:
        item: a :class:`HardNegativeItem`, or a dict shaped like an item of the file (every
            field but :data:`HARD_NEGATIVE_ITEM_FIELDS` is a kind whose value is a text or
            ``None``).
    """
    if isinstance(item, HardNegativeItem):
        return item.negatives()
    if isinstance(item, Mapping):
        return {
            str(k): str(v)
            for k, v in item.items()
            if k not in HARD_NEGATIVE_ITEM_FIELDS and v is not None and v != ""
        }
    raise TypeError(f"expected a HardNegativeItem or a dict, got {type(item).__name__}")


@dataclass(frozen=True)
class VQAQuestion:
    question_id: int
    image_id: int
    question: str
    answer: str
    type: str


@dataclass(frozen=True)
class VEItem:
    id: int
    image_id: int
    statement: str
    label: str


@dataclass(frozen=True)
class NLVR2Item:
    """A statement about a (left, right) image pair and its truth.

    Attributes:
        type: the statement's form when the file gives it (a reporting group of NLVR2
            accuracy, e.g. ``both`` or ``compare`` in the generated benchmark); ``None``
            otherwise.
    """

    id: int
    left_image_id: int
    right_image_id: int
    statement: str
    label: bool
    type: str | None = None

    @property
    def image_ids(self) -> tuple[int, int]:
        return (self.left_image_id, self.right_image_id)


@dataclass
class TaskFile:
    """A loaded task file.

    Attributes:
        path: the file.
        items: typed records, in file order.
        labels: the label vocabulary (VQA ``answers``, VE ``labels``, NLVR2 ``[true,
            false]`` as strings ``"True"``/``"False"``; hard negatives: the kinds found, in
            order of first appearance).
        skipped: items left out, with reasons.
    """

    path: Path
    items: list[Any]
    labels: list[str] = field(default_factory=list)
    skipped: list[SkippedRecord] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.items)


def task_path(root: str | os.PathLike[str], task: str, split: str) -> Path:
    """``root/annotations/{task}_{split}.json`` (``task`` in vqa, ve, nlvr2, hard_negatives)."""
    return Path(root) / "annotations" / f"{task}_{split}.json"


class _Reader:
    def __init__(self, path: Path, strict: bool, image_ids: Iterable[int] | None) -> None:
        self.path = path
        self.strict = strict
        self.ids = None if image_ids is None else {int(i) for i in image_ids}
        self.skipped: list[SkippedRecord] = []

    def bad(self, reason: str) -> None:
        if self.strict:
            raise DataError(self.path, reason)
        self.skipped.append(SkippedRecord(str(self.path), reason))

    def top(self, data: Any, keys: Mapping[str, type]) -> None:
        if not isinstance(data, dict):
            raise DataError(
                self.path, f"top level must be a JSON object, got {type(data).__name__}"
            )
        for key, typ in keys.items():
            if not isinstance(data.get(key), typ):
                raise DataError(
                    self.path, f'missing or invalid "{key}" (expected a {typ.__name__})'
                )

    def fields(
        self,
        k: int,
        item: Any,
        spec: Mapping[str, Callable[[Any], Any]],
        optional: Iterable[str] = (),
    ) -> dict | None:
        """Converted fields of item ``k``; an ``optional`` field may be absent (→ ``None``)."""
        if not isinstance(item, dict):
            self.bad(f"item {k}: expected an object, got {type(item).__name__}")
            return None
        out = {}
        for name, conv in spec.items():
            if name not in item and name in optional:
                out[name] = None
                continue
            if name not in item:
                self.bad(f"item {k}: missing field {name!r}")
                return None
            try:
                out[name] = conv(item[name])
            except (TypeError, ValueError) as exc:
                self.bad(f"item {k}: field {name!r}: {exc}")
                return None
        return out

    def known(self, k: int, *ids: int) -> bool:
        if self.ids is None:
            return True
        missing = [i for i in ids if i not in self.ids]
        if missing:
            self.bad(f"item {k}: image id(s) {missing} not in the data set")
            return False
        return True

    def done(self, items: list[Any], labels: list[str]) -> TaskFile:
        if self.skipped:
            log.warning("%s: %d item(s) skipped (see .skipped)", self.path, len(self.skipped))
        return TaskFile(self.path, items, labels, self.skipped)


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int | str):
        raise TypeError(f"expected an integer, got {v!r}")
    return int(v)


def _text(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise TypeError(f"expected non-empty text, got {v!r}")
    return v


def _opt_text(v: Any) -> str | None:
    return None if v is None else _text(v)


def _opt_int(v: Any) -> int | None:
    return None if v is None else _int(v)


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise TypeError(f"expected true or false, got {v!r}")
    return v


def load_hard_negatives(
    path: str | os.PathLike[str], image_ids: Iterable[int] | None = None, strict: bool = False
) -> TaskFile:
    """Load ``hard_negatives_{split}.json`` → :class:`TaskFile` of :class:`HardNegativeItem`.

    Each item has ``image_id``, ``caption_index``, ``caption`` (and optionally
    ``caption_id``); every other field is a hard-negative kind whose value is a text or
    ``null``. ``labels`` lists the kinds found, in order of first appearance."""
    r = _Reader(Path(path), strict, image_ids)
    data = load_json(r.path)
    r.top(data, {"items": list})
    items = []
    kinds: dict[str, None] = {}
    spec = {"image_id": _int, "caption_index": _int, "caption": _text, "caption_id": _opt_int}
    for k, item in enumerate(data["items"]):
        f = r.fields(k, item, spec, optional=("caption_id",))
        if f is None or not r.known(k, f["image_id"]):
            continue
        negatives: dict[str, str | None] = {}
        for name, value in item.items():
            if name in HARD_NEGATIVE_ITEM_FIELDS:
                continue
            try:
                negatives[str(name)] = _opt_text(value)
            except TypeError as exc:
                r.bad(f"item {k}: hard negative {name!r}: {exc}")
                negatives = {}
                break
        else:
            kinds.update(dict.fromkeys(negatives))
            items.append(HardNegativeItem(**f, kinds=negatives))
    return r.done(items, list(kinds))


def load_vqa(
    path: str | os.PathLike[str], image_ids: Iterable[int] | None = None, strict: bool = False
) -> TaskFile:
    """Load ``vqa_{split}.json`` → :class:`TaskFile` of :class:`VQAQuestion`; ``labels`` is
    the answer vocabulary. A question whose answer is not in it is a bad item. ``type`` is any
    non-empty string (per-type accuracies are reported for the types the file has)."""
    r = _Reader(Path(path), strict, image_ids)
    data = load_json(r.path)
    r.top(data, {"answers": list, "questions": list})
    answers = [str(a) for a in data["answers"]]
    vocab = set(answers)
    items = []
    spec = {
        "question_id": _int,
        "image_id": _int,
        "question": _text,
        "answer": _text,
        "type": _text,
    }
    for k, item in enumerate(data["questions"]):
        f = r.fields(k, item, spec)
        if f is None or not r.known(k, f["image_id"]):
            continue
        if f["answer"] not in vocab:
            r.bad(f"item {k}: answer {f['answer']!r} is not in the file's answers")
            continue
        items.append(VQAQuestion(**f))
    return r.done(items, answers)


def load_ve(
    path: str | os.PathLike[str], image_ids: Iterable[int] | None = None, strict: bool = False
) -> TaskFile:
    """Load ``ve_{split}.json`` → :class:`TaskFile` of :class:`VEItem`."""
    r = _Reader(Path(path), strict, image_ids)
    data = load_json(r.path)
    r.top(data, {"labels": list, "items": list})
    labels = [str(a) for a in data["labels"]]
    items = []
    spec = {"id": _int, "image_id": _int, "statement": _text, "label": _text}
    for k, item in enumerate(data["items"]):
        f = r.fields(k, item, spec)
        if f is None or not r.known(k, f["image_id"]):
            continue
        if f["label"] not in labels:
            r.bad(f"item {k}: label {f['label']!r} is not in the file's labels {labels}")
            continue
        items.append(VEItem(**f))
    return r.done(items, labels)


def load_nlvr2(
    path: str | os.PathLike[str], image_ids: Iterable[int] | None = None, strict: bool = False
) -> TaskFile:
    """Load ``nlvr2_{split}.json`` → :class:`TaskFile` of :class:`NLVR2Item` (``type`` is
    optional: text or ``null``)."""
    r = _Reader(Path(path), strict, image_ids)
    data = load_json(r.path)
    r.top(data, {"items": list})
    items = []
    spec = {
        "id": _int,
        "left_image_id": _int,
        "right_image_id": _int,
        "statement": _text,
        "label": _bool,
        "type": _opt_text,
    }
    for k, item in enumerate(data["items"]):
        f = r.fields(k, item, spec, optional=("type",))
        if f is None or not r.known(k, f["left_image_id"], f["right_image_id"]):
            continue
        items.append(NLVR2Item(**f))
    return r.done(items, ["True", "False"])


LOADERS: dict[str, Callable[..., TaskFile]] = {
    "vqa": load_vqa,
    "ve": load_ve,
    "nlvr2": load_nlvr2,
    "hard_negatives": load_hard_negatives,
}


def load_task(
    root: str | os.PathLike[str],
    task: str,
    split: str,
    image_ids: Iterable[int] | None = None,
    strict: bool = False,
) -> TaskFile:
    """Load ``root/annotations/{task}_{split}.json`` with the loader of ``task``.

    Raises:
        DataError: file missing or malformed (or, in strict mode, a bad item).
        ValueError: unknown ``task``.
    """
    if task not in LOADERS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(LOADERS)}")
    path = task_path(root, task, split)
    if not path.is_file():
        raise DataError(
            path,
            f"no {task} file for split {split!r} (the relational-scenes generator writes it: "
            "`neurogshn data scenes`)",
        )
    return LOADERS[task](path, image_ids=image_ids, strict=strict)
