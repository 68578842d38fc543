r"""Task data, fine-tuning loop, prediction and task checkpoints (VQA, VE, NLVR2).

A fine-tuned checkpoint is one directory::

    out/
        config.json            backbone GSHN config   (GSHN.save_pretrained)
        model.safetensors      backbone weights       (GSHN.save_pretrained)
        task_head.safetensors  head weights
        task.json              task, head config (labels …), graph settings, fine-tune config,
                               validation metrics per epoch

so that ``GSHN.from_pretrained(out)`` still loads the backbone alone (e.g. for retrieval) and
:func:`load_task_checkpoint` loads both. It is written atomically after every epoch (a kill
leaves the previous epoch's complete directory). Loss: cross-entropy over the labels.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from neurogshn.errors import CheckpointError, DataError
from neurogshn.tasks.heads import TaskHead, TaskHeadConfig, TaskModel
from neurogshn.tasks.metrics import nlvr2_accuracy, ve_accuracy, vqa_accuracy
from neurogshn.utils.io import atomic_path

TASK_FILE = "task.json"
HEAD_WEIGHTS_FILE = "task_head.safetensors"
TASK_FORMAT = "neurogshn-task-checkpoint"
NLVR2_LABELS = ["False", "True"]


@dataclass(frozen=True)
class TaskExample:
    """One example of a classification task.

    Args:
        id: question / item id from the task file.
        image_ids: the image(s) (two for NLVR2: left, right).
        text: question or statement.
        label: index into the task's label vocabulary.
        group: reporting group (VQA question type; ``None`` otherwise).
        answer: the reference answer / label as text (kept for answers outside the head's
            vocabulary, whose ``label`` is ``-1``: they always count as wrong).
    """

    id: Any
    image_ids: tuple[int, ...]
    text: str
    label: int
    group: str | None = None
    answer: str | None = None


@dataclass
class GraphSpec:
    """How the images of a task become graphs (must match what the backbone was trained on)."""

    segmenter: str = "gt"
    backbone: str = "efficientnet_lite0"
    nodes: str = "panoptic"
    edges: str = "full"

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path) -> GraphSpec:
        """Read the ``graph`` section of ``train_config.json`` (or a task's ``task.json``) in
        the checkpoint directory or its parent run directory; defaults when there is none."""
        ckpt = Path(checkpoint)
        for candidate in (
            ckpt / TASK_FILE,
            ckpt / "train_config.json",
            ckpt.parent / "train_config.json",
        ):
            if candidate.is_file():
                try:
                    graph = json.loads(candidate.read_text()).get("graph") or {}
                except (OSError, json.JSONDecodeError):
                    continue
                known = {k: graph[k] for k in asdict(cls()) if k in graph}
                return cls(**known)
        return cls()


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
    """

    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    backbone_lr: float = 1e-4
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    head: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------
# Task files
# ------------------------------------------------------------------------------------------
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
            group, ident = None, item["id"]
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


# ------------------------------------------------------------------------------------------
# Batching, training, prediction
# ------------------------------------------------------------------------------------------
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


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def predict(
    model: TaskModel,
    examples: Sequence[TaskExample],
    get_graph: Callable[[int], Any],
    batch_size: int = 64,
) -> Tensor:
    """Predicted label index per example (eval mode, no gradients; mode restored)."""
    was = model.training
    model.eval()
    dev = _device_of(model)
    preds = []
    try:
        for start in range(0, len(examples), batch_size):
            chunk = [replace(e, label=0) for e in examples[start : start + batch_size]]
            graphs, texts, _ = make_batch(chunk, get_graph, dev)
            preds.append(model(graphs, texts).argmax(-1).cpu())
    finally:
        model.train(was)
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)


def task_metrics(
    task: str, labels: Sequence[str], examples: Sequence[TaskExample], predictions: Tensor
) -> dict[str, float]:
    """The task's metrics for ``predictions`` (label indices) against the examples."""
    pred = [labels[int(p)] for p in predictions]
    # an answer outside the head's vocabulary can never be predicted: always wrong
    true = [labels[e.label] if e.label >= 0 else f"<oov:{e.answer}>" for e in examples]
    if task == "vqa":
        return vqa_accuracy(pred, true, [e.group or "other" for e in examples])
    if task == "ve":
        return ve_accuracy(pred, true)
    if task == "nlvr2":
        return nlvr2_accuracy([p == "True" for p in pred], [t == "True" for t in true])
    raise ValueError(f"unknown task {task!r}")


def evaluate_task(
    model: TaskModel,
    examples: Sequence[TaskExample],
    get_graph: Callable[[int], Any],
    batch_size: int = 64,
) -> dict[str, float]:
    """Predict and score (``vqa_acc`` + per type, ``ve_acc`` + per label, ``nlvr2_acc``)."""
    if not examples:
        raise ValueError("no examples to evaluate")
    preds = predict(model, examples, get_graph, batch_size)
    return task_metrics(model.config.task, model.config.labels, examples, preds)


def build_task_model(
    backbone: nn.Module, task: str, labels: Sequence[str], head: Mapping[str, Any] | None = None
) -> TaskModel:
    """A :class:`TaskModel` with a fresh head sized to the backbone (probed once)."""
    with torch.no_grad():
        was = backbone.training
        backbone.eval()
        probe = backbone.encode_text(["probe"])
        backbone.train(was)
    cfg = TaskHeadConfig(
        task=task,
        labels=list(labels),
        embed_dim=int(probe.text_embeds.shape[-1]),
        token_dim=int(probe.token_embeds.shape[-1]),
        **dict(head or {}),
    )
    return TaskModel(backbone, TaskHead(cfg).to(_device_of(backbone)))


def finetune(
    model: TaskModel,
    train_examples: Sequence[TaskExample],
    get_graph: Callable[[int], Any],
    config: FinetuneConfig,
    out_dir: str | Path | None = None,
    val_examples: Sequence[TaskExample] | None = None,
    graph_spec: GraphSpec | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    val_get_graph: Callable[[int], Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Fine-tune ``model`` (head, and the backbone unless ``backbone_lr == 0``) with
    cross-entropy; evaluate on ``val_examples`` after every epoch; save atomically.

    Args:
        model: backbone + head.
        train_examples: training examples; ``get_graph(image_id)`` gives their graphs.
        config: hyper-parameters.
        out_dir: checkpoint directory rewritten atomically after every epoch (``None``: none).
        val_examples: validation examples (graphs from ``val_get_graph``, default
            ``get_graph``).
        graph_spec: graph settings recorded in ``task.json``.
        extra: more entries for ``task.json``.

    Returns:
        ``{"history": [per-epoch dict with loss, train accuracy, val metrics, seconds], …}``.
    """
    if not train_examples:
        raise ValueError("no training examples")
    gen = random.Random(config.seed)
    torch.manual_seed(config.seed)
    head_params = list(model.head.parameters())
    groups: list[dict[str, Any]] = [{"params": head_params, "lr": config.lr}]
    if config.backbone_lr > 0:
        groups.append({"params": list(model.backbone.parameters()), "lr": config.backbone_lr})
    else:
        for p in model.backbone.parameters():
            p.requires_grad_(False)
    optim = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    dev = _device_of(model)
    history: list[dict[str, Any]] = []
    order = list(range(len(train_examples)))
    steps_per_epoch = math.ceil(len(order) / config.batch_size)
    frozen = config.backbone_lr <= 0
    for epoch in range(config.epochs):
        model.train()
        if frozen:  # a frozen backbone gives the head deterministic features (no dropout)
            model.backbone.eval()
        gen.shuffle(order)
        t0 = time.perf_counter()
        total, correct, loss_sum = 0, 0, 0.0
        bar = _progress(range(steps_per_epoch), progress, f"epoch {epoch + 1}/{config.epochs}")
        for step in bar:
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            graphs, texts, labels = make_batch([train_examples[i] for i in idx], get_graph, dev)
            logits = model(graphs, texts)
            loss = nn.functional.cross_entropy(logits, labels)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optim.step()
            total += len(idx)
            correct += int((logits.argmax(-1) == labels).sum())
            loss_sum += float(loss.detach()) * len(idx)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": loss_sum / total,
            "train_acc": correct / total,
            "seconds": time.perf_counter() - t0,
        }
        if val_examples:
            record["val"] = evaluate_task(
                model, val_examples, val_get_graph or get_graph, config.batch_size
            )
        history.append(record)
        acc_key = f"{model.config.task}_acc"
        val_txt = f", val {acc_key} {100 * record['val'][acc_key]:.1f}%" if val_examples else ""
        log(
            f"epoch {epoch + 1}: loss {record['loss']:.4f}, train acc "
            f"{100 * record['train_acc']:.1f}%{val_txt} ({record['seconds']:.1f} s)"
        )
        if out_dir is not None:
            save_task_checkpoint(
                model,
                out_dir,
                graph_spec=graph_spec,
                extra={**dict(extra or {}), "finetune": asdict(config), "history": history},
            )
    return {"history": history}


def _progress(it: Any, enabled: bool, desc: str) -> Any:
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, leave=False)


# ------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------
def save_task_checkpoint(
    model: TaskModel,
    directory: str | Path,
    graph_spec: GraphSpec | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write backbone + head + ``task.json`` atomically into ``directory``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    with atomic_path(directory) as tmp:
        tmp.mkdir(parents=True)
        model.backbone.save_pretrained(tmp)
        state = {k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}
        save_file(state, str(tmp / HEAD_WEIGHTS_FILE))
        meta = {
            "format": TASK_FORMAT,
            "version": 1,
            "task": model.config.task,
            "head": model.config.to_dict(),
            "graph": asdict(graph_spec or GraphSpec()),
            **dict(extra or {}),
        }
        (tmp / TASK_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return directory


def read_task_json(directory: str | Path) -> dict[str, Any]:
    """``task.json`` of a fine-tuned checkpoint (CheckpointError when absent or bad)."""
    path = Path(directory) / TASK_FILE
    if not path.is_file():
        raise CheckpointError(
            path, "no task.json: not a fine-tuned task checkpoint (run `neurogshn finetune`)"
        )
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(path, f"not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != TASK_FORMAT:
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
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from neurogshn.model.gshn import GSHN
    from neurogshn.utils.runtime import resolve_device

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
    if not path.is_file():
        raise CheckpointError(path, "head weights missing")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(path, f"not a readable safetensors file ({exc})") from exc
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


def run_finetune(
    task: str,
    checkpoint: str | Path,
    data: str | Path,
    out_dir: str | Path,
    train_split: str = "train",
    val_split: str | None = "val",
    epochs: int = 5,
    batch_size: int = 32,
    lr: float = 1e-3,
    backbone_lr: float = 1e-4,
    max_train: int | None = None,
    seed: int = 0,
    device: Any = None,
    cache_dir: str | Path | None = None,
    strict: bool = False,
    progress: bool = True,
    head: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Everything ``neurogshn finetune`` does: load, build graphs, fine-tune, save.

    Returns:
        ``{"history", "val" (last epoch's validation metrics or None), "notes", "seconds"}``.
    """
    from neurogshn.model.gshn import GSHN
    from neurogshn.tasks.evaluate import graph_getter, load_graphs
    from neurogshn.utils.runtime import resolve_device, seed_everything

    t0 = time.perf_counter()
    ckpt = Path(checkpoint)
    if not ckpt.is_dir():
        raise CheckpointError(ckpt, "checkpoint directory not found")
    dev = resolve_device(device)
    seed_everything(seed)
    spec = GraphSpec.from_checkpoint(ckpt)
    notes: list[str] = []
    labels, train_ex, skipped = load_task_examples(data, task, train_split, strict=strict)
    if skipped:
        notes.append(f"{len(skipped)} training item(s) skipped: {skipped[0]}")
    graphs = {train_split: load_graphs(data, train_split, spec, cache_dir, strict, progress, dev)}
    get_train, has_train = graph_getter(graphs[train_split])
    train_ex, dropped = filter_examples(train_ex, has_train)
    if dropped:
        notes.append(f"{dropped} training item(s) dropped: an image has no graph")
    if max_train is not None:
        train_ex = train_ex[:max_train]
    if not train_ex:
        raise DataError(task_file(data, task, train_split), "no usable training item")
    val_ex: list[TaskExample] = []
    get_val = get_train
    if val_split:
        _, val_ex, vskipped = load_task_examples(data, task, val_split, labels, strict=strict)
        if vskipped:
            notes.append(f"{len(vskipped)} validation item(s) skipped: {vskipped[0]}")
        vgraphs = load_graphs(data, val_split, spec, cache_dir, strict, progress, dev)
        get_val, has_val = graph_getter(vgraphs)
        val_ex, _ = filter_examples(val_ex, has_val)

    backbone = GSHN.from_pretrained(ckpt, device=dev)
    model = build_task_model(backbone, task, labels, head)
    cfg = FinetuneConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        backbone_lr=backbone_lr,
        seed=seed,
        head=dict(head or {}),
    )

    result = finetune(
        model,
        train_ex,
        get_train,
        cfg,
        out_dir=out_dir,
        val_examples=val_ex or None,
        graph_spec=spec,
        progress=progress,
        log=log,
        val_get_graph=get_val,
        extra={
            "from_checkpoint": str(ckpt),
            "data": str(data),
            "splits": {"train": train_split, "val": val_split},
            "notes": notes,
        },
    )
    val = result["history"][-1].get("val")
    return {
        "history": result["history"],
        "val": val,
        "notes": notes,
        "seconds": time.perf_counter() - t0,
    }
