r"""Fine-tuning loop, prediction and task checkpoints (VQA, VE, NLVR2); the task files and
their batches are :mod:`neurogshn.tasks.task_data`.

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
:func:`~neurogshn.tasks.task_checkpoint.load_task_checkpoint` loads both. The whole directory is
rewritten atomically after every epoch (a kill leaves the previous epoch's complete directory;
the rewrite drops ``resume/``), and ``resume/`` is rewritten atomically every
``checkpoint_every`` optimizer steps, so ``finetune(..., resume=True)`` (``neurogshn finetune
--resume``) continues a killed run from the newest state -- bit for bit like an uninterrupted
run on CPU with one thread: weights, optimizer moments, the example order, the position in the
epoch, the loss sums of the epoch under way and every RNG state are restored (the state, its
files, atomicity and integrity checks are in :mod:`neurogshn.tasks.finetune_state`). Nothing is
pickled: tensors go to safetensors, the rest to JSON; a truncated or altered file is a
:class:`~neurogshn.errors.CheckpointError` naming it. Loss: cross-entropy over the labels.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from neurogshn.errors import CheckpointError, ConfigError, DataError
from neurogshn.graph.config import GraphConfig, graph_getter, load_graphs
from neurogshn.tasks.finetune_config import FinetuneConfig
from neurogshn.tasks.finetune_state import (
    STATE_FILE,
    TRAINER_FILE,
    FinetuneTrainingState,
    _check_resumable,
    _EpochSums,
    _examples_digest,
    _module_digest,
    _prepare_out_dir,
    _restore_rng,
    _restore_state,
    _RunIdentity,
    _save_resume_dir,
    _tuple_state,
    check_output_dir,
)
from neurogshn.tasks.heads import TaskHead, TaskHeadConfig, TaskModel
from neurogshn.tasks.metrics import nlvr2_accuracy, ve_accuracy, vqa_accuracy
from neurogshn.tasks.task_checkpoint import write_task_checkpoint
from neurogshn.tasks.task_data import (
    TaskExample,
    filter_examples,
    load_task_examples,
    make_batch,
    task_file,
)
from neurogshn.utils.runtime import resolve_device, seed_everything


# ------------------------------------------------------------------------------------------
# Training, prediction
# ------------------------------------------------------------------------------------------
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
        return nlvr2_accuracy(
            [p == "True" for p in pred], [t == "True" for t in true], [e.group for e in examples]
        )
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


#: head options a new task head gets unless told otherwise: the backbone's ITM evidence when
#: it has an ITM head, and 8 soft-count readouts (docs/tasks.md, "Task heads")
DEFAULT_HEAD_OPTIONS: dict[str, Any] = {"evidence": "auto", "count_heads": 8}
#: the backbone's learning rate per task when none is given. NLVR2's: at 1e-4 fine-tuning
#: erased the ITM evidence its single-image clauses need (docs/results.md, "NLVR2 with five
#: pairs per training image").
DEFAULT_BACKBONE_LR: dict[str, float] = {"vqa": 1e-4, "ve": 1e-4, "nlvr2": 2e-5}


def build_task_model(
    backbone: nn.Module, task: str, labels: Sequence[str], head: Mapping[str, Any] | None = None
) -> TaskModel:
    """A :class:`TaskModel` with a fresh head sized to the backbone (probed once).

    ``head`` holds :class:`TaskHeadConfig` fields over :data:`DEFAULT_HEAD_OPTIONS`, plus
    ``evidence``: ``True`` (the backbone's ITM evidence, sets ``evidence_dim``; an error
    without an ITM head), ``False`` or ``"auto"`` (when the backbone has one);
    ``init="itm"`` copies the backbone's ITM head into the fusion encoder and takes its sizes.
    """
    with torch.no_grad():
        was = backbone.training
        backbone.eval()
        probe = backbone.encode_text(["probe"])
        backbone.train(was)
    sizes: dict[str, Any] = {
        "embed_dim": int(probe.text_embeds.shape[-1]),
        "token_dim": int(probe.token_embeds.shape[-1]),
    }
    max_length = getattr(getattr(backbone, "config", None), "text_max_length", None)
    if max_length is not None:
        sizes["max_tokens"] = max(64, int(max_length))
    head = DEFAULT_HEAD_OPTIONS | dict(head or {})
    itm_head = None
    if head.get("init") == "itm":
        itm_head = getattr(backbone, "itm_head", None)
        if itm_head is None:
            raise ConfigError(
                "head init 'itm' needs a backbone pretrained with an ITM head (itm_weight > 0)"
            )
        itm_sizes = _itm_head_sizes(itm_head)
        clash = {k: v for k, v in head.items() if k in itm_sizes and v != itm_sizes[k]}
        if clash:
            raise ConfigError(
                f"head init 'itm' takes the ITM head's sizes {itm_sizes}; these differ: {clash}"
            )
        sizes |= itm_sizes
    evidence = head.pop("evidence", False)
    if evidence not in (True, False, "auto"):
        raise ConfigError(f"head option evidence must be true, false or 'auto', got {evidence!r}")
    size = int(getattr(backbone, "evidence_size", 0))
    if evidence == "auto":
        evidence = size > 0
    if evidence:
        if size <= 0:
            raise ConfigError(
                "the head's ITM evidence needs a backbone pretrained with an ITM head "
                "(itm_weight > 0)"
            )
        sizes["evidence_dim"] = size
    cfg = TaskHeadConfig(task=task, labels=list(labels), **(sizes | head))
    task_head = TaskHead(cfg)
    if itm_head is not None:
        task_head.fusion.copy_itm_head(itm_head)
    return TaskModel(backbone, task_head.to(_device_of(backbone)))


def _itm_head_sizes(itm_head: nn.Module) -> dict[str, Any]:
    """The task-head sizes of a copy of ``itm_head`` (fusion ``blip``)."""
    first = itm_head.layers[0]
    sizes: dict[str, Any] = {
        "fusion": "blip",
        "layers": len(itm_head.layers),
        "heads": int(first.attn.num_heads),
    }
    if itm_head.token_position is not None:
        sizes["max_tokens"] = int(itm_head.token_position.weight.shape[0])
    return sizes


def finetune(
    model: TaskModel,
    train_examples: Sequence[TaskExample],
    get_graph: Callable[[int], Any],
    config: FinetuneConfig,
    out_dir: str | Path | None = None,
    val_examples: Sequence[TaskExample] | None = None,
    graph_spec: GraphConfig | None = None,
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

    def state(epoch: int, step: int, current: _EpochSums) -> FinetuneTrainingState:
        return FinetuneTrainingState(
            run, epoch, step, steps_per_epoch, current, history, order, gen, optim
        )

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
            write_task_checkpoint(
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
# Checkpoints
# ------------------------------------------------------------------------------------------
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
    backbone_lr: float | None = None,
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
    ``backbone_lr=None``: the task's :data:`DEFAULT_BACKBONE_LR`.

    Returns:
        ``{"history", "val" (last epoch's validation metrics or None), "notes", "seconds",
        "resumed_from" (state directory or None)}``.
    """
    from neurogshn.model.gshn import GSHN

    t0 = time.perf_counter()
    ckpt = Path(checkpoint)
    if not ckpt.is_dir():
        raise CheckpointError(ckpt, "checkpoint directory not found")
    if checkpoint_every < 0:
        raise ConfigError(f"--checkpoint-every must be >= 0, got {checkpoint_every}")
    check_output_dir(out_dir, resume, overwrite)
    dev = resolve_device(device)
    seed_everything(seed)
    spec = GraphConfig.from_checkpoint(ckpt)
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
        backbone_lr=DEFAULT_BACKBONE_LR.get(task, 1e-4) if backbone_lr is None else backbone_lr,
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
