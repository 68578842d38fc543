"""Evaluate a checkpoint on a task and split of a COCO-format data set (``neurogshn evaluate``).

* ``retrieval``: any GSHN checkpoint (pretrained, i.e. zero-shot, or fine-tuned: the backbone of
  a task checkpoint is used); any COCO captions + panoptic data set. Hard-negative diagnostics
  when ``annotations/hard_negatives_{split}.json`` exists (or a file is named), otherwise they
  are omitted and a note says so.
* ``vqa`` / ``ve`` / ``nlvr2``: a checkpoint written by ``neurogshn finetune`` for that task and
  the split's task file.

Graphs are built (and cached) with the settings the checkpoint was trained with
(:class:`~neurogshn.graph.config.GraphConfig`), unless overridden.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from neurogshn.data.coco import describe_skipped
from neurogshn.errors import CheckpointError, ConfigError, DataError
from neurogshn.graph.config import GraphConfig, graph_getter, load_graphs
from neurogshn.tasks.finetune_state import TASK_FILE
from neurogshn.tasks.task_checkpoint import load_task_checkpoint, read_task_json
from neurogshn.tasks.task_data import filter_examples, load_task_examples, task_file
from neurogshn.utils.runtime import resolve_device

EVAL_TASKS: tuple[str, ...] = ("retrieval", "vqa", "ve", "nlvr2")


@dataclass
class EvaluationResult:
    """What an evaluation measured: flat ``metrics`` plus ``notes`` for the reader."""

    task: str
    checkpoint: str
    data: str
    split: str
    metrics: dict[str, float]
    notes: list[str] = field(default_factory=list)
    graph: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def retrieval_diagnostics(
    root: str | Path, split: str, coco: Any, graphs: Any, max_images: int | None, notes: list[str]
) -> Any:
    """The diagnostics object of the images and captions retrieval will evaluate, or ``None``.

    ``None`` without a note when the data set declares no benchmark
    (:func:`~neurogshn.data.diagnostics.diagnostics_for`): such a data set has no oracle, and
    nothing about one is reported. ``None`` with a note when it declares one whose oracle
    cannot judge these captions or images (the diagnostics' ``problem``).
    """
    from neurogshn.data.diagnostics import diagnostics_for

    diagnostics = diagnostics_for(root, split, dataset=coco)
    if diagnostics is None:
        return None
    ids = [int(i) for i in graphs.image_ids if coco.captions.get(int(i))][:max_images]
    problem = diagnostics.problem([c for i in ids for c in coco.captions[i]], ids)
    if problem is not None:
        notes.append(f"caption oracle omitted: {problem}")
        return None
    return diagnostics


#: candidates per query that ``evaluate --task retrieval`` re-ranks with the ITM head
DEFAULT_RERANK = 16


def evaluate_checkpoint(
    task: str,
    checkpoint: str | Path,
    data: str | Path,
    split: str = "test",
    *,
    batch_size: int = 64,
    device: Any = None,
    strict: bool = False,
    hard_negatives: str | Path | bool | None = True,
    graph_overrides: dict[str, str] | None = None,
    cache_dir: str | Path | None = None,
    max_images: int | None = None,
    progress: bool = True,
    rerank: int | None = None,
    oracle: bool = True,
    pool_norm: float = 0.0,
    itc_weight: float | None = None,
    score_weight: float | None = None,
    rerank_word_evidence: bool = False,
) -> EvaluationResult:
    """Evaluate ``checkpoint`` on ``task`` / ``split`` of the data set at ``data``.

    Args:
        task: ``retrieval``, ``vqa``, ``ve`` or ``nlvr2``.
        checkpoint: a checkpoint directory (``config.json`` + ``model.safetensors``, plus
            ``task.json`` and head weights for the classification tasks).
        data: data set root (COCO panoptic layout; our generated one or the real COCO 2017).
        split: split name.
        batch_size: graphs per forward pass.
        device: ``None``/``"auto"``, ``"cpu"``, ``"cuda"`` …
        strict: stop at the first bad record of the data set / task file.
        hard_negatives: retrieval only: ``True`` uses ``annotations/hard_negatives_{split}.json``
            when present, ``False``/``None`` skips the diagnostics, a path names the file.
        graph_overrides: ``GraphConfig`` fields to override (segmenter, backbone, nodes, edges).
        cache_dir: graph cache directory (default: inside the data set).
        max_images: retrieval only: the first N images.
        progress: progress bars while building graphs.
        rerank: retrieval only: re-rank each query's ``K`` best ITC candidates with the ITM
            head (:func:`~neurogshn.tasks.rerank.itm_rerank`); ``None``:
            :data:`DEFAULT_RERANK` when the checkpoint has an ITM head, else 0; ``0``: ITC only.
        oracle: retrieval only: when the data set declares a benchmark with a truth oracle
            (:func:`~neurogshn.data.diagnostics.diagnostics_for`), also report what its
            captions allow (``*_oracle``, ``ambiguous_caption_frac``), ``*_true@1`` and
            ``*_false@1_<reason>`` (see :func:`~neurogshn.tasks.retrieval.evaluate_retrieval`);
            a note says so when the oracle cannot judge the split. Any other data set gets
            the plain figures.
        pool_norm: retrieval only: ``β > 0`` adds the transductive image→text figures
            ``i2t_R@K_poolnorm`` (:func:`~neurogshn.tasks.rerank.pool_normalize_i2t`);
            needs re-ranking.
        itc_weight: retrieval only: ``w`` of the fused score ``ITM + w · τ⁻¹ · cos`` used by
            re-ranking, the pool count and the hard-negative diagnostics; ``None``:
            :data:`~neurogshn.tasks.rerank.FUSED_ITC_WEIGHT`.
        score_weight: retrieval only: ``itm_mlm_score_weight`` of the ITM score (the weight
            of the masked-LM word evidence; :meth:`~neurogshn.model.gshn.GSHN.itm_scores`);
            ``None``: the checkpoint's.
        rerank_word_evidence: retrieval only: re-rank with the word evidence too (see
            :func:`~neurogshn.tasks.retrieval.evaluate_retrieval`; slow on a CPU).
    """

    if task not in EVAL_TASKS:
        raise ValueError(f"unknown task {task!r} (known: {', '.join(EVAL_TASKS)})")
    t0 = time.perf_counter()
    ckpt = Path(checkpoint)
    if not ckpt.is_dir():
        raise CheckpointError(ckpt, "checkpoint directory not found")
    root = Path(data)
    if not root.is_dir():
        raise DataError(root, "data set directory not found")
    dev = resolve_device(device)
    spec = GraphConfig.from_checkpoint(ckpt)
    if graph_overrides:
        spec = replace(spec, **{k: v for k, v in graph_overrides.items() if v is not None})
    notes: list[str] = []

    if task == "retrieval":
        from neurogshn.data.coco import CocoPanopticDataset
        from neurogshn.data.diagnostics import declared_benchmark
        from neurogshn.model.gshn import GSHN
        from neurogshn.tasks.rerank import FUSED_ITC_WEIGHT, POOL_NORM_SMOOTHING
        from neurogshn.tasks.retrieval import evaluate_retrieval

        model = GSHN.from_pretrained(ckpt, device=dev)
        if score_weight is not None:
            if not score_weight >= 0:
                raise ConfigError(
                    f"the score weight (--score-weight {score_weight:g}) must be >= 0"
                )
            model.config = model.config.replace(itm_mlm_score_weight=score_weight)
        if rerank is None:
            rerank = DEFAULT_RERANK if getattr(model, "itm_head", None) is not None else 0
        if pool_norm < 0 or (pool_norm > 0 and not rerank):
            raise ConfigError(
                f"pool normalisation (--pool-norm {pool_norm:g}) needs a weight >= 0 and "
                "re-ranking with an ITM head (--rerank K > 0)"
            )
        if itc_weight is None:
            itc_weight = FUSED_ITC_WEIGHT
        if not itc_weight >= 0:
            raise ConfigError(f"the ITC weight (--itc-weight {itc_weight:g}) must be >= 0")
        coco = CocoPanopticDataset(root, split, strict=strict)
        graphs = load_graphs(root, split, spec, cache_dir, strict, progress, dev)
        for what, records in (
            (f"the {split} annotations", coco.skipped),
            (f"the {split} graphs", graphs.skipped),
        ):
            note = describe_skipped(what, records)
            if note:
                notes.append(note)
        hn: Any = None
        if hard_negatives is True:
            path = task_file(root, "hard_negatives", split)
            if path.is_file():
                hn = path
            else:
                rel = path.relative_to(root)
                notes.append(f"hard-negative diagnostics omitted: no {rel} in the data set")
        elif hard_negatives:
            hn = Path(hard_negatives)
        else:
            notes.append("hard-negative diagnostics omitted (not requested)")
        diagnostics = None
        if oracle:
            diagnostics = retrieval_diagnostics(root, split, coco, graphs, max_images, notes)
        elif declared_benchmark(root) is not None:
            notes.append("caption oracle omitted (not requested)")
        metrics = evaluate_retrieval(
            model,
            graphs,
            coco,
            hard_negatives=hn,
            batch_size=batch_size,
            max_images=max_images,
            rerank=rerank,
            diagnostics=diagnostics,
            pool_norm=pool_norm,
            itc_weight=itc_weight,
            rerank_word_evidence=rerank_word_evidence,
        )
        if diagnostics is not None:
            notes.append(
                "*_oracle: expected recall of a perfect reader of the captions (true pairs "
                "first, in random order; *_oracle_specific: captions true of fewer images "
                f"first); {100 * metrics['ambiguous_caption_frac']:.1f} % of the captions are "
                "true of more than one image. *_true@1: the first candidate is true of the "
                "query, whoever owns it. *_R@1_given_truth: R@1 with every false pair left "
                "out (how the ranking breaks the ties the captions leave)"
            )
        if rerank:
            notes.append(
                f"R@K re-ranked: the {rerank} best ITC candidates of each query by ITM + "
                f"{itc_weight:g} x ITC logit (ITC-only figures: *_itc)"
                + (
                    ""
                    if rerank_word_evidence or not getattr(model, "has_token_head", False)
                    else "; ITM = the match logits, without the word evidence "
                    "(--rerank-word-evidence adds it)"
                )
            )
        if pool_norm:
            notes.append(
                f"*_poolnorm: image->text scores minus {pool_norm:g} x log({POOL_NORM_SMOOTHING:g} "
                "+ number of evaluated images a caption matches by ITM); transductive (uses the "
                "other test images), not comparable with the per-query i2t_R@K"
            )
        if any(key.endswith("_acc_fused") for key in metrics):
            notes.append(
                f"hard negatives scored by ITM + {itc_weight:g} x ITC logit (ITM alone: "
                "*_acc_itm, cosine alone: *_acc_itc)"
            )
        if (ckpt / TASK_FILE).is_file():
            notes.append(f"backbone of a fine-tuned {read_task_json(ckpt)['task']} checkpoint")
        elif max_images is None:
            notes.append("zero-shot retrieval: the checkpoint's embeddings, no task fine-tuning")
    else:
        model, meta = load_task_checkpoint(ckpt, device=dev)
        if meta["task"] != task:
            raise CheckpointError(
                ckpt / TASK_FILE, f"checkpoint was fine-tuned for {meta['task']!r}, not {task!r}"
            )
        _, examples, skipped = load_task_examples(
            root, task, split, labels=model.config.labels, strict=strict
        )
        note = describe_skipped(f"the {task} {split} task file", skipped)
        if note:
            notes.append(note)
        graphs = load_graphs(root, split, spec, cache_dir, strict, progress, dev)
        note = describe_skipped(f"the {split} graphs", graphs.skipped)
        if note:
            notes.append(note)
        get, has = graph_getter(graphs)
        examples, dropped = filter_examples(examples, has)
        if dropped:
            notes.append(f"{dropped} item(s) dropped: an image has no graph")
        oov = sum(e.label < 0 for e in examples)
        if oov:
            notes.append(
                f"{oov} item(s) have an answer outside the head's vocabulary: counted as wrong"
            )
        if not examples:
            raise DataError(task_file(root, task, split), "no usable item")
        from neurogshn.tasks.finetune import evaluate_task

        metrics = evaluate_task(model, examples, get, batch_size)
    return EvaluationResult(
        task=task,
        checkpoint=str(ckpt),
        data=str(root),
        split=split,
        metrics=metrics,
        notes=notes,
        graph=asdict(spec),
        seconds=time.perf_counter() - t0,
    )
