r"""Task data, fine-tuning loop, prediction and task checkpoints (VQA, VE, NLVR2).

A fine-tuned checkpoint is one directory::

    out/
        config.json                 backbone GSHN config   (GSHN.save_pretrained)
        model.safetensors           backbone weights       (GSHN.save_pretrained)
        task_head.safetensors       head weights
        task.json                   task, head config (labels …), graph settings, fine-tune
                                    config, validation metrics per epoch
        training_state.safetensors  resume state at the end of the last epoch: AdamW moments,
                                    torch (+CUDA) RNG states, the example order
        trainer.json                resume state (JSON): epoch, step, history, the shuffle and
                                    Python/NumPy RNG states, the size + SHA-256 of every file
        resume/                     only while an epoch is under way: the newest mid-epoch state
            task_head.safetensors   (head; backbone config.json + model.safetensors too when
            training_state.safetensors   the backbone is trained), written every
            trainer.json                 ``FinetuneConfig.checkpoint_every`` steps

so that ``GSHN.from_pretrained(out)`` still loads the backbone alone (e.g. for retrieval) and
:func:`load_task_checkpoint` loads both. The whole directory is rewritten atomically after every
epoch (a kill leaves the previous epoch's complete directory; the rewrite drops ``resume/``), and
``resume/`` is rewritten atomically every ``checkpoint_every`` optimizer steps, so
``finetune(..., resume=True)`` (``neurogshn finetune --resume``) continues a killed run from the
newest state -- bit for bit like an uninterrupted run on CPU (same thread count): weights,
optimizer moments, the example order, the position in the epoch, the loss sums of the epoch
under way and every RNG state are restored. Nothing is pickled: tensors go to safetensors, the
rest to JSON; a truncated or altered file is a :class:`~neurogshn.errors.CheckpointError`
naming it. Loss: cross-entropy over the labels.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from neurogshn.errors import CheckpointError, ConfigError, DataError
from neurogshn.tasks.heads import TaskHead, TaskHeadConfig, TaskModel
from neurogshn.tasks.metrics import nlvr2_accuracy, ve_accuracy, vqa_accuracy
from neurogshn.utils.io import atomic_path

TASK_FILE = "task.json"
HEAD_WEIGHTS_FILE = "task_head.safetensors"
TASK_FORMAT = "neurogshn-task-checkpoint"
NLVR2_LABELS = ["False", "True"]
# the file names of a pretraining checkpoint (neurogshn.training.checkpoint), reused
MODEL_WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "training_state.safetensors"
TRAINER_FILE = "trainer.json"
#: ``trainer.json`` format of a fine-tuning resume state (not a pretraining checkpoint).
STATE_FORMAT = "neurogshn-finetune-state"
STATE_VERSION = 1
#: Sub-directory of the output holding the newest mid-epoch resume state.
RESUME_DIR = "resume"
#: :class:`FinetuneConfig` fields that may differ between a saved state and the run resuming it
#: (``epochs`` may only grow: a finished run can be extended).
RESUME_MAY_DIFFER: tuple[str, ...] = ("epochs", "checkpoint_every")


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
    resume: bool = False,
    overwrite: bool = False,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    r"""Fine-tune ``model`` (head, and the backbone unless ``backbone_lr == 0``) with
    cross-entropy; evaluate on ``val_examples`` after every epoch; save atomically; resume.

    One step on the examples ``order[s B : (s+1) B]`` of the epoch's shuffled order:
    :math:`\mathcal{L} = -\frac{1}{B}\sum_i \log \operatorname{softmax}(z_i)_{y_i}`, backward,
    global-norm clipping, AdamW. The order is reshuffled in place every epoch by a
    ``random.Random(seed)`` of its own.

    Args:
        model: backbone + head.
        train_examples: training examples; ``get_graph(image_id)`` gives their graphs.
        config: hyper-parameters.
        out_dir: checkpoint directory, rewritten atomically after every epoch, with the
            mid-epoch resume state in ``out_dir/resume`` every ``config.checkpoint_every``
            steps (``None``: nothing is written). Without ``resume`` / ``overwrite`` it must
            not exist yet or be empty.
        val_examples: validation examples (graphs from ``val_get_graph``, default
            ``get_graph``).
        graph_spec: graph settings recorded in ``task.json``.
        extra: more entries for ``task.json``.
        resume: continue from the newest state in ``out_dir`` (the model's weights, optimizer,
            position and RNG states are replaced by the saved ones; the task, labels, head
            and every :class:`FinetuneConfig` field but ``epochs`` (which may grow) and
            ``checkpoint_every`` must match). Starts fresh when ``out_dir`` holds nothing.
        overwrite: discard a previous run's state in ``out_dir`` and start over.
        callback: called after every optimizer step (and after that step's state, if any, is
            written) with ``{"epoch", "step", "global_step", "loss", "saved"}``
            (``epoch`` and ``step`` 1-based, ``saved``: the state directory written at this
            step or ``None``); an exception from it stops the run.

    Returns:
        ``{"history": [per-epoch dict with loss, train accuracy, val metrics, seconds],
        "resumed_from": the state directory resumed from, or None}``.

    Raises:
        CheckpointError: a missing, truncated or altered state file (named), or a state
            written with another configuration (the differences are listed).
        ConfigError: ``out_dir`` holds a previous run and neither ``resume`` nor
            ``overwrite`` was given.
    """
    if not train_examples:
        raise ValueError("no training examples")
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other")
    if resume and out_dir is None:
        raise ValueError("resume needs the out_dir of the run to continue")
    out = Path(out_dir) if out_dir is not None else None
    saved = _prepare_out_dir(out, resume, overwrite, log) if out is not None else None
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
    frozen = config.backbone_lr <= 0
    run = _RunIdentity(
        task=model.config.task,
        head=model.config.to_dict(),
        finetune=asdict(config),
        examples=_examples_digest(train_examples),
        num_examples=len(train_examples),
        backbone=_module_digest(model.backbone) if frozen and out is not None else None,
    )
    history: list[dict[str, Any]] = []
    order = list(range(len(train_examples)))
    steps_per_epoch = math.ceil(len(order) / config.batch_size)
    start_epoch, start_step = 0, 0
    sums = _EpochSums()
    resumed_from: Path | None = None
    if saved is not None:
        _check_resumable(saved, run, config)
        _restore_state(saved, model, optim, trained_backbone=not frozen)
        try:
            start_epoch, start_step = saved.epoch, saved.step
            history = list(saved.trainer["history"])
            sums = _EpochSums(**saved.trainer["epoch_sums"])
            gen.setstate(_tuple_state(saved.trainer["shuffle_rng"]))
        except (TypeError, ValueError) as exc:
            raise CheckpointError(saved.path / TRAINER_FILE, f"malformed state: {exc}") from None
        order = [int(i) for i in saved.tensors["order"].tolist()]
        if sorted(order) != list(range(len(train_examples))) or not (
            0 <= start_step < steps_per_epoch
        ):
            raise CheckpointError(
                saved.path / STATE_FILE, "example order / step do not fit the training examples"
            )
        _restore_rng(saved)
        resumed_from = saved.path
        log(
            f"resumed from {saved.path} (epoch {start_epoch + 1}, step {start_step}"
            f"/{steps_per_epoch}, {len(history)} epoch(s) done)"
        )
        if start_epoch >= config.epochs:
            log(f"nothing to do: {config.epochs} epoch(s) already done")

    def state(epoch: int, step: int, current: _EpochSums) -> _State:
        return _State(run, epoch, step, steps_per_epoch, current, history, order, gen, optim)

    for epoch in range(start_epoch, config.epochs):
        model.train()
        if frozen:  # a frozen backbone gives the head deterministic features (no dropout)
            model.backbone.eval()
        first = start_step if epoch == start_epoch else 0
        if first == 0:
            gen.shuffle(order)
            sums = _EpochSums()
        t0 = time.perf_counter() - sums.seconds
        bar = _progress(
            range(first, steps_per_epoch), progress, f"epoch {epoch + 1}/{config.epochs}"
        )
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
            sums.total += len(idx)
            sums.correct += int((logits.argmax(-1) == labels).sum())
            sums.loss_sum += float(loss.detach()) * len(idx)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
            global_step = epoch * steps_per_epoch + step + 1
            written = None
            every = config.checkpoint_every
            # the last step of an epoch is followed by the end-of-epoch save right away
            if (
                out is not None
                and every > 0
                and global_step % every == 0
                and step + 1 < steps_per_epoch
            ):
                sums.seconds = time.perf_counter() - t0
                written = _save_resume_dir(model, out, state(epoch, step + 1, sums), frozen)
            if callback is not None:
                callback(
                    {
                        "epoch": epoch + 1,
                        "step": step + 1,
                        "global_step": global_step,
                        "loss": float(loss.detach()),
                        "saved": written,
                    }
                )
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": sums.loss_sum / sums.total,
            "train_acc": sums.correct / sums.total,
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
        if out is not None:
            _write_checkpoint(
                model,
                out,
                graph_spec=graph_spec,
                extra={**dict(extra or {}), "finetune": asdict(config), "history": history},
                state=state(epoch + 1, 0, _EpochSums()),
            )
    return {"history": history, "resumed_from": resumed_from}


def _progress(it: Any, enabled: bool, desc: str) -> Any:
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, leave=False)


# ------------------------------------------------------------------------------------------
# Resume state
# ------------------------------------------------------------------------------------------
@dataclass
class _EpochSums:
    """Running sums of the epoch under way (restored so a resumed epoch reports the same)."""

    total: int = 0
    correct: int = 0
    loss_sum: float = 0.0
    seconds: float = 0.0


@dataclass(frozen=True)
class _RunIdentity:
    """What a resumed run must share with the one that wrote the state."""

    task: str
    head: dict[str, Any]
    finetune: dict[str, Any]
    examples: str
    num_examples: int
    backbone: str | None  # digest of a frozen backbone (None: trained, saved with the state)


@dataclass
class _State:
    """Everything written to ``training_state.safetensors`` + ``trainer.json``."""

    run: _RunIdentity
    epoch: int  # 0-based epoch under way (== epochs done when step == 0)
    step: int  # optimizer steps done in that epoch
    steps_per_epoch: int
    sums: _EpochSums
    history: list[dict[str, Any]]
    order: list[int]
    gen: random.Random
    optim: torch.optim.Optimizer

    def payload(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        from neurogshn.training.checkpoint import capture_rng_state, flatten_optimizer_state

        opt_tensors, opt_meta = flatten_optimizer_state(self.optim.state_dict())
        rng_tensors, rng_meta = capture_rng_state()
        tensors = {
            **opt_tensors,
            **rng_tensors,
            "order": torch.tensor(self.order, dtype=torch.int64),
        }
        version, internal, gauss = self.gen.getstate()
        meta = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "epoch": self.epoch,
            "step": self.step,
            "global_step": self.epoch * self.steps_per_epoch + self.step,
            "steps_per_epoch": self.steps_per_epoch,
            "epoch_sums": asdict(self.sums),
            "history": self.history,
            "task": self.run.task,
            "head": self.run.head,
            "finetune": self.run.finetune,
            "train_examples": {"count": self.run.num_examples, "sha256": self.run.examples},
            "backbone": (
                {"trained": False, "sha256": self.run.backbone}
                if self.run.backbone is not None
                else {"trained": True}
            ),
            "shuffle_rng": [version, list(internal), gauss],
            "optimizer": opt_meta,
            "rng": rng_meta,
        }
        return tensors, meta


@dataclass
class FinetuneState:
    """A resume state read back from disk (files verified against their recorded digests).

    Attributes:
        path: the state directory (the output directory or its ``resume/``).
        trainer: contents of ``trainer.json``.
        tensors: contents of ``training_state.safetensors``.
    """

    path: Path
    trainer: dict[str, Any]
    tensors: dict[str, Tensor] = field(repr=False)

    @property
    def epoch(self) -> int:
        """0-based epoch under way (the number of finished epochs when ``step == 0``)."""
        return int(self.trainer["epoch"])

    @property
    def step(self) -> int:
        """Optimizer steps done in that epoch."""
        return int(self.trainer["step"])


def find_finetune_state(out_dir: str | Path) -> Path | None:
    """The directory of the newest resume state in a fine-tuning output, or ``None``:
    ``out_dir/resume`` (mid-epoch; always newer, the end-of-epoch rewrite removes it) or
    ``out_dir`` itself (end of the last epoch)."""
    out = Path(out_dir)
    if (out / RESUME_DIR).is_dir():
        return out / RESUME_DIR
    if (out / TRAINER_FILE).is_file():
        return out
    return None


def read_finetune_state(directory: str | Path, verify: bool = True) -> FinetuneState:
    """Read and validate a resume state directory.

    Args:
        directory: ``out_dir`` or ``out_dir/resume``.
        verify: also compare every file's SHA-256 with the recorded one (sizes are always
            compared).

    Raises:
        CheckpointError: naming the missing, truncated, altered or malformed file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(directory)
    trainer_path = path / TRAINER_FILE
    if not trainer_path.is_file():
        raise CheckpointError(trainer_path, "missing: not a fine-tuning resume state")
    try:
        trainer = json.loads(trainer_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(trainer_path, f"not valid JSON (truncated?): {exc}") from None
    if not isinstance(trainer, dict) or trainer.get("format") != STATE_FORMAT:
        raise CheckpointError(trainer_path, f"not a {STATE_FORMAT} file")
    if int(trainer.get("version", -1)) > STATE_VERSION:
        raise CheckpointError(
            trainer_path,
            f"format version {trainer['version']} is newer than this neurogshn ({STATE_VERSION})",
        )
    required = (
        "epoch",
        "step",
        "steps_per_epoch",
        "epoch_sums",
        "history",
        "task",
        "head",
        "finetune",
        "train_examples",
        "backbone",
        "shuffle_rng",
        "optimizer",
        "rng",
        "files",
    )
    missing = [k for k in required if k not in trainer]
    if missing:
        raise CheckpointError(trainer_path, f"missing field(s) {', '.join(missing)}")
    for name, info in trainer["files"].items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(file, "missing from the resume state")
        size = file.stat().st_size
        if size != info["bytes"]:
            raise CheckpointError(
                file, f"truncated or altered: {size} bytes, the run wrote {info['bytes']}"
            )
        if verify and _file_sha256(file) != info["sha256"]:
            raise CheckpointError(file, "corrupted: SHA-256 differs from the one recorded")
    state_path = path / STATE_FILE
    if STATE_FILE not in trainer["files"] or not state_path.is_file():
        raise CheckpointError(state_path, "missing from the resume state")
    try:
        tensors = load_file(str(state_path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(state_path, f"not a readable safetensors file: {exc}") from None
    if "order" not in tensors or "rng.torch" not in tensors:
        raise CheckpointError(state_path, "no example order / RNG state in the file")
    return FinetuneState(path, trainer, tensors)


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _examples_digest(examples: Sequence[TaskExample]) -> str:
    """SHA-256 of the training examples (ids, images, texts, labels) in their given order."""
    rows = [[str(e.id), list(e.image_ids), e.text, e.label] for e in examples]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def _module_digest(module: nn.Module) -> str:
    """SHA-256 of a module's state dict (names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        t = value.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _tuple_state(state: Sequence[Any]) -> tuple:
    version, internal, gauss = state
    return (int(version), tuple(int(v) for v in internal), gauss)


def _restore_rng(state: FinetuneState) -> None:
    """Restore the Python, NumPy, torch and CUDA RNG states saved with ``state``."""
    from neurogshn.training.checkpoint import restore_rng_state

    try:
        restore_rng_state(state.tensors, state.trainer["rng"], rank=0)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(state.path / TRAINER_FILE, f"bad RNG state: {exc}") from None


def _write_state_files(directory: Path, state: _State) -> None:
    """``training_state.safetensors``, then ``trainer.json`` (with the size and SHA-256 of
    every other file of ``directory``) -- the last file written."""
    from safetensors.torch import save_file

    tensors, meta = state.payload()
    save_file(tensors, str(directory / STATE_FILE))
    meta["files"] = {
        p.name: {"bytes": p.stat().st_size, "sha256": _file_sha256(p)}
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != TRAINER_FILE
    }
    (directory / TRAINER_FILE).write_text(json.dumps(meta, indent=1) + "\n")


def _save_head(model: TaskModel, directory: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}
    save_file(state, str(directory / HEAD_WEIGHTS_FILE))


def _save_resume_dir(model: TaskModel, out: Path, state: _State, frozen: bool) -> Path:
    """Write ``out/resume`` atomically: head (+ backbone when trained) + the state."""
    target = out / RESUME_DIR
    with atomic_path(target) as tmp:
        tmp.mkdir(parents=True)
        _save_head(model, tmp)
        if not frozen:
            model.backbone.save_pretrained(tmp)
        _write_state_files(tmp, state)
    return target


def check_output_dir(out_dir: str | Path, resume: bool = False, overwrite: bool = False) -> None:
    """Raise :class:`~neurogshn.errors.ConfigError` when fine-tuning into ``out_dir`` with these
    flags is refused (reads nothing but directory listings; see :func:`finetune`).

    Without ``resume`` / ``overwrite`` the directory must not exist or be empty; ``resume``
    needs a resume state there (or an empty / missing directory: a fresh start);
    ``overwrite`` only replaces a fine-tuning output (``task.json`` or ``trainer.json``).
    """
    out = Path(out_dir)
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a directory: choose another --out")
    old = out.with_name(f".{out.name}.old")
    if resume and not out.exists() and old.is_dir():
        raise ConfigError(
            f"{out} is missing but {old} exists: a kill hit the moment the directory was being "
            f"replaced; rename {old} to {out} and run again with --resume"
        )
    state_dir = find_finetune_state(out)
    # leftovers of an interrupted atomic write (.resume.XXXX.tmp, .resume.old) do not count
    occupied = out.is_dir() and any(
        not (p.name.startswith(".") and p.name.endswith((".tmp", ".old"))) for p in out.iterdir()
    )
    if not occupied:
        return
    if resume:
        if state_dir is None:
            raise ConfigError(
                f"{out} holds no fine-tuning resume state ({TRAINER_FILE}) to continue: pass "
                "--overwrite to start over there, or choose another --out"
            )
        return
    if not overwrite:
        if state_dir is not None:
            raise ConfigError(
                f"{out} holds the resumable state of an earlier fine-tuning run "
                f"({state_dir / TRAINER_FILE}): pass --resume to continue it, --overwrite to "
                "discard it and start over, or choose another --out"
            )
        raise ConfigError(
            f"{out} already exists and is not empty: pass --overwrite to replace a fine-tuned "
            "checkpoint there, or choose another --out"
        )
    if state_dir is None and not (out / TASK_FILE).is_file():
        raise ConfigError(
            f"{out} is not empty and holds no fine-tuning output ({TASK_FILE}, "
            f"{TRAINER_FILE}): refusing to replace it, even with --overwrite; choose another --out"
        )


def _prepare_out_dir(
    out: Path, resume: bool, overwrite: bool, log: Callable[[str], None]
) -> FinetuneState | None:
    """Check ``out`` against the flags; returns the state to resume from (or ``None``)."""
    check_output_dir(out, resume, overwrite)
    state_dir = find_finetune_state(out)
    if resume:
        if state_dir is not None:
            return read_finetune_state(state_dir)
        log(f"--resume: no fine-tuning state in {out}; starting fresh")
        return None
    if overwrite and state_dir is not None:
        # the old run's weights stay until the first epoch end replaces the whole directory,
        # but its state goes now, so that a kill before then cannot resume the discarded run
        shutil.rmtree(out / RESUME_DIR, ignore_errors=True)
        for name in (TRAINER_FILE, STATE_FILE):
            (out / name).unlink(missing_ok=True)
        log(f"--overwrite: discarded the earlier fine-tuning state in {out}")
    return None


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _dict_diff(saved: Mapping[str, Any], now: Mapping[str, Any], prefix: str) -> list[str]:
    """``"key: checkpoint A, now B"`` for every differing entry (long lists summarised)."""
    out = []
    for key in sorted(set(saved) | set(now)):
        a, b = saved.get(key), now.get(key)
        if a == b:
            continue
        if isinstance(a, list) and isinstance(b, list):
            shown = f"{len(a)} entries vs {len(b)}"
            pairs = enumerate(zip(a, b, strict=False))
            first = next((i for i, (x, y) in pairs if x != y), None)
            if first is not None:
                shown += (
                    f", first difference at [{first}]: {_short(a[first])} vs {_short(b[first])}"
                )
            out.append(f"{prefix}{key}: checkpoint vs now: {shown}")
        else:
            out.append(f"{prefix}{key}: checkpoint {_short(a)}, now {_short(b)}")
    return out


def _check_resumable(saved: FinetuneState, run: _RunIdentity, config: FinetuneConfig) -> None:
    """CheckpointError listing every difference between the saved run and this one."""
    where = saved.path / TRAINER_FILE
    t = saved.trainer
    diffs: list[str] = []
    if t["task"] != run.task:
        diffs.append(f"task: checkpoint {t['task']!r}, now {run.task!r}")
    diffs += _dict_diff(t["head"], run.head, "head.")
    ignore = set(RESUME_MAY_DIFFER)
    diffs += _dict_diff(
        {k: v for k, v in t["finetune"].items() if k not in ignore},
        {k: v for k, v in run.finetune.items() if k not in ignore},
        "",
    )
    ex = t["train_examples"]
    if ex.get("count") != run.num_examples:
        diffs.append(f"training examples: checkpoint {ex.get('count')}, now {run.num_examples}")
    elif ex.get("sha256") != run.examples:
        diffs.append("training examples: same number but different items or order")
    trained = bool(t["backbone"].get("trained"))
    if trained != (run.backbone is None):
        diffs.append(
            f"backbone: checkpoint {'trained' if trained else 'frozen'}, now "
            f"{'trained' if run.backbone is None else 'frozen'}"
        )
    elif not trained and t["backbone"].get("sha256") != run.backbone:
        diffs.append("frozen backbone weights differ (another --from checkpoint?)")
    if diffs:
        raise CheckpointError(
            where,
            "the run was started with a different configuration ("
            + "; ".join(diffs)
            + "): resume with the same settings, or start a new run (--overwrite or another "
            "--out)",
        )
    done_or_started = saved.epoch + (1 if saved.step > 0 else 0)
    if config.epochs < done_or_started:
        raise CheckpointError(
            where,
            f"the run already reached epoch {done_or_started} "
            f"(step {saved.step} of epoch {saved.epoch + 1}): --epochs {config.epochs} is "
            "fewer (epochs can only be extended on resume)",
        )


def _restore_state(
    saved: FinetuneState, model: TaskModel, optim: torch.optim.Optimizer, trained_backbone: bool
) -> None:
    """Load the head (+ backbone when trained) weights and the optimizer state."""
    from neurogshn.training.checkpoint import unflatten_optimizer_state

    _load_weights(model.head, saved.path / HEAD_WEIGHTS_FILE)
    if trained_backbone:
        _load_weights(model.backbone, saved.path / MODEL_WEIGHTS_FILE)
    try:
        optim.load_state_dict(unflatten_optimizer_state(saved.tensors, saved.trainer["optimizer"]))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            saved.path / STATE_FILE, f"optimizer state does not fit this model: {exc}"
        ) from None


def _load_weights(module: nn.Module, path: Path) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(path, "missing from the resume state")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(path, f"not a readable safetensors file: {exc}") from None
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(path, f"weights do not fit this model: {exc}") from None


# ------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------
def save_task_checkpoint(
    model: TaskModel,
    directory: str | Path,
    graph_spec: GraphSpec | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write backbone + head + ``task.json`` atomically into ``directory`` (replacing it)."""
    return _write_checkpoint(model, Path(directory), graph_spec, extra, state=None)


def _write_checkpoint(
    model: TaskModel,
    directory: Path,
    graph_spec: GraphSpec | None,
    extra: Mapping[str, Any] | None,
    state: _State | None,
) -> Path:
    """The whole output directory, atomically; with the resume state when ``state`` is
    given (written last, so ``trainer.json`` can record every other file's digest)."""
    with atomic_path(directory) as tmp:
        tmp.mkdir(parents=True)
        model.backbone.save_pretrained(tmp)
        _save_head(model, tmp)
        meta = {
            "format": TASK_FORMAT,
            "version": 1,
            "task": model.config.task,
            "head": model.config.to_dict(),
            "graph": asdict(graph_spec or GraphSpec()),
            **dict(extra or {}),
        }
        (tmp / TASK_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        if state is not None:
            _write_state_files(tmp, state)
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
    resume: bool = False,
    overwrite: bool = False,
    checkpoint_every: int = 200,
) -> dict[str, Any]:
    """Everything ``neurogshn finetune`` does: load, build graphs, fine-tune, save.

    ``resume`` / ``overwrite`` / ``checkpoint_every``: see :func:`finetune` and
    :class:`FinetuneConfig` (the output directory is checked before anything is loaded).

    Returns:
        ``{"history", "val" (last epoch's validation metrics or None), "notes", "seconds",
        "resumed_from" (state directory or None)}``.
    """
    from neurogshn.model.gshn import GSHN
    from neurogshn.tasks.evaluate import graph_getter, load_graphs
    from neurogshn.utils.runtime import resolve_device, seed_everything

    t0 = time.perf_counter()
    ckpt = Path(checkpoint)
    if not ckpt.is_dir():
        raise CheckpointError(ckpt, "checkpoint directory not found")
    if checkpoint_every < 0:
        raise ConfigError(f"--checkpoint-every must be >= 0, got {checkpoint_every}")
    check_output_dir(out_dir, resume, overwrite)
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
        checkpoint_every=checkpoint_every,
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
        resume=resume,
        overwrite=overwrite,
    )
    val = result["history"][-1].get("val") if result["history"] else None
    return {
        "history": result["history"],
        "val": val,
        "notes": notes,
        "seconds": time.perf_counter() - t0,
        "resumed_from": result["resumed_from"],
    }
