"""The pretraining job end to end (what ``neurogshn pretrain`` and examples/pretrain_stl.py run).

1. data: generate the embedded benchmark into ``data.root`` when it is missing
   (:data:`~neurogshn.data.benchmarks.DEFAULT_BENCHMARK`, through the benchmark registry:
   nothing here knows the benchmark's words, kinds of negative or question types);
2. graphs: build (or load) the graph caches of the training and evaluation splits;
3. model: ``GSHN.from_config_name(model.name, **overrides)`` sized to the graphs' features;
4. evaluate the untrained model (retrieval both ways + hard-negative accuracies);
5. pretrain (checkpoints, CSV log, exact resume, DDP under torchrun);
6. evaluate the trained model, save ``final/`` and ``results.json``, print the summary table.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from neurogshn.errors import ConfigError, DataError
from neurogshn.training.config import TrainConfig
from neurogshn.training.distributed import (
    DistInfo,
    barrier,
    cleanup_distributed,
    init_distributed,
    local_device,
)
from neurogshn.utils.io import write_json_atomic
from neurogshn.utils.runtime import resolve_device, seed_everything

if TYPE_CHECKING:
    from neurogshn.model.text import SentenceEncoding

RESULTS_FILE = "results.json"


@dataclass
class PretrainOutcome:
    """What :func:`run_pretraining` returns (rank 0 has the evaluations)."""

    run_dir: Path
    final_dir: Path
    untrained: dict[str, float] | None
    trained: dict[str, float] | None
    train: Any
    timings: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def set_determinism(cfg: TrainConfig) -> None:
    """Seeds everything; deterministic algorithms (warn-only: CPU kernels are deterministic).

    MKL's own reproducibility mode (``MKL_CBWR``) is set when :mod:`neurogshn` is imported.
    """
    seed_everything(cfg.seed)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def ensure_scenes(cfg: TrainConfig, info: DistInfo, log: Any = print) -> Path:
    """The data root, generated first when missing and ``data.generate_if_missing``."""
    root = Path(cfg.data.root)
    if not (root / "annotations").is_dir():
        if not cfg.data.generate_if_missing:
            raise DataError(
                root,
                "no annotations/ directory (generate it with `neurogshn data "
                "scenes` or set data.generate_if_missing=true)",
            )
        if root.is_dir() and any(root.iterdir()):
            raise DataError(
                root,
                "has no annotations/ and is not empty: the embedded benchmark is generated "
                "only into a new or empty directory (choose another data.root, or write it "
                "yourself with `neurogshn data scenes --out ROOT --overwrite`)",
            )
        if info.is_main:
            from neurogshn.data.benchmarks import DEFAULT_BENCHMARK, generate

            g = cfg.data.generate
            splits = {"train": g.train, "val": g.val, "test": g.test}
            wording = "held-out phrasings for val/test" if g.heldout_phrasings else "one wording"
            log(
                f"generating {DEFAULT_BENCHMARK} into {root} ({splits}, {g.image_size}px, "
                f"{wording})"
            )
            generate(
                DEFAULT_BENCHMARK,
                root,
                seed=g.seed,
                splits=splits,
                image_size=g.image_size,
                heldout_phrasings=g.heldout_phrasings,
            )
        barrier(info)
    return root


def load_split(cfg: TrainConfig, root: Path, split: str, info: DistInfo, device: Any) -> Any:
    """A split's graph dataset (rank 0 builds the cache, the other ranks then read it)."""
    from neurogshn.graph.cache import load_graph_dataset

    kwargs = dict(
        segmenter=cfg.graph.segmenter,
        backbone=cfg.graph.backbone,
        nodes=cfg.graph.nodes,
        edges=cfg.graph.edges,
        cache_dir=cfg.graph.cache_dir,
        strict=cfg.data.strict,
        progress=cfg.log.progress and info.is_main,
        device=device,
    )
    if info.is_main:
        graphs = load_graph_dataset(root, split, **kwargs)
    barrier(info)
    if not info.is_main:
        graphs = load_graph_dataset(root, split, **kwargs)
    return graphs


def load_captions(cfg: TrainConfig, root: Path, split: str) -> Any:
    from neurogshn.data.coco import CocoPanopticDataset

    return CocoPanopticDataset(root, split, strict=cfg.data.strict)


def hard_negatives_path(root: Path, split: str) -> Path:
    return root / "annotations" / f"hard_negatives_{split}.json"


def check_init_from(cfg: TrainConfig) -> None:
    """Refuse a ``model.init_from`` that names no saved model, before any data is touched (an
    empty string, e.g. from an unset shell variable, must not silently mean "random weights").
    """
    from neurogshn.model.gshn import CONFIG_FILE

    init_from = cfg.model.init_from
    if init_from is None:
        return
    if not init_from.strip():
        raise ConfigError(
            "model.init_from is empty: give a saved model directory (…/final) or null for "
            "random weights"
        )
    path = Path(init_from)
    if not (path / CONFIG_FILE).is_file():
        raise ConfigError(
            f"model.init_from {path}: not a saved model directory (no {CONFIG_FILE}; expected "
            "a run's final/ or a directory written by GSHN.save_pretrained)"
        )


def model_overrides(cfg: TrainConfig) -> dict[str, Any]:
    """``model.overrides`` with the loss section's weights as ``<loss>_weight`` (the loss
    section wins)."""
    overrides = dict(cfg.model.overrides)
    for key, weight in cfg.loss.as_overrides().items():
        overrides[f"{key}_weight"] = weight
    return overrides


def check_model_config(cfg: TrainConfig) -> None:
    """Build the model's configuration (not the model) from ``model.name`` and
    :func:`model_overrides`, so that a bad override is reported before any data is generated
    or read."""
    from neurogshn.model.config import config_from_name

    if cfg.model.init_from is not None:
        return
    try:
        config_from_name(cfg.model.name, **model_overrides(cfg))
    except ConfigError as exc:
        raise ConfigError(f"model (name {cfg.model.name!r} + overrides): {exc}") from None


def build_model(cfg: TrainConfig, graphs: Any) -> torch.nn.Module:
    """GSHN from ``model.name`` + overrides (feature sizes from the graphs), or ``init_from``."""
    from neurogshn.model.gshn import GSHN

    if cfg.model.init_from is not None:
        # model.overrides grow the saved model (e.g. itm_attention_sink); loss weights come
        # from the saved config
        return GSHN.from_pretrained(cfg.model.init_from, overrides=cfg.model.overrides or None)
    overrides = model_overrides(cfg)
    overrides.setdefault("node_features", int(graphs.feature_dim))
    overrides.setdefault("edge_features", int(graphs.edge_dim))
    try:
        return GSHN.from_config_name(cfg.model.name, **overrides)
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"model {cfg.model.name!r} with overrides {overrides}: {exc}") from None


def keep_legacy_itm_head(cfg: TrainConfig, ckpt_root: Path, say: Any = print) -> None:
    """A run whose checkpoints predate a field of ``LEGACY_ITM_FIELDS`` (model.config) resumes
    with the ITM head it was trained with instead of failing on the weights."""
    from neurogshn.model.config import LEGACY_ITM_FIELDS

    for path in sorted(ckpt_root.glob("*/config.json")):
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(saved, dict):
            continue
        for key, value in LEGACY_ITM_FIELDS.items():
            if key not in saved and key not in cfg.model.overrides:
                cfg.model.overrides[key] = value
                say(f"note: {path} predates {key}; resuming with {key}={value}")
        return


def warm_text_cache(
    model: torch.nn.Module,
    source: Any,
    kinds: Any = None,
) -> int:
    """Encode every training text through the frozen text layers once, in a fixed order.

    Besides the speed-up, this makes the memoised frozen states independent of the order in
    which batches first met them (an interrupted and resumed run sees the same bits as an
    uninterrupted one). Returns the number of texts (0 when the model has no such cache).
    """
    encoder = next((m for m in model.modules() if hasattr(m, "warm_cache")), None)
    if encoder is None:
        return 0
    texts: list[str] = []
    for image_id in sorted(source.captions):
        texts.extend(str(c) for c in source.captions[image_id])
    for key in sorted(source.hard_negatives):
        negs = source.hard_negatives[key]
        texts.extend(negs[k] for k in sorted(negs) if kinds is None or k in kinds)
    texts = list(dict.fromkeys(texts))
    if hasattr(encoder, "clear_cache"):
        encoder.clear_cache()
    encoder.warm_cache(texts)
    return len(texts)


def prepare_objective(model: torch.nn.Module, source: Any, train_coco: Any) -> Any:
    """Fit what the model reads from the training captions (the token statistics that decide
    which words masked language modelling masks and the match score reads; a resumed run
    reloads the same counts), build the objective and, when it uses phrase grounding, attach
    the captions' groundings to ``source``."""
    if getattr(model, "token_statistics", None) is not None:
        model.fit_token_statistics(
            [str(c) for i in sorted(source.captions) for c in source.captions[i]]
        )
    objective = build_objective(model)
    if objective.uses_grounding(model):
        from neurogshn.data.grounding import caption_groundings

        source.groundings = caption_groundings(train_coco)
    return objective


def build_objective(model: torch.nn.Module) -> Any:
    from neurogshn.losses.objective import PretrainingObjective

    # The loss section of the TrainConfig is already part of the model config (its weights
    # decide which heads exist), so the objective takes the model config's weights.
    return PretrainingObjective()


def evaluate(
    cfg: TrainConfig,
    model: torch.nn.Module,
    graphs: Any,
    coco: Any,
    root: Path,
    device: torch.device,
) -> dict[str, float]:
    """Retrieval both ways + hard-negative accuracies on ``data.eval_split``."""
    from neurogshn.tasks.retrieval import evaluate_retrieval

    hn = hard_negatives_path(root, cfg.data.eval_split)
    items = None
    kinds = cfg.eval.hard_negative_kinds
    if hn.is_file() and (kinds is None or kinds):
        from neurogshn.tasks.hard_negatives import load_hard_negative_items

        keep = None if kinds is None else set(kinds)
        items = [_keep_kinds(item, keep) for item in load_hard_negative_items(hn)]
    return evaluate_retrieval(
        MemoisedTextModel(model),
        graphs,
        coco,
        hard_negatives=items,
        batch_size=cfg.eval.batch_size,
        device=device,
        max_images=cfg.data.max_eval_images,
        # The memo only keeps sentence embeddings, so the summary scores hard negatives with
        # the embedding cosine; `neurogshn evaluate --task retrieval` adds the ITM figures.
        hard_negative_scorer="itc",
    )


class MemoisedTextModel(torch.nn.Module):
    """Evaluation view of a model whose ``encode_text`` embeds each distinct text once.

    Retrieval evaluation embeds every caption, then each caption again beside each of its hard
    negatives; with the memo (valid for one evaluation: the weights do not change) the second
    pass costs nothing. Only ``text_embeds`` is returned (all that evaluation reads).
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self._memo: dict[str, torch.Tensor] = {}

    def encode_image(self, graphs: Any) -> Any:
        return self.model.encode_image(graphs)

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> SentenceEncoding:
        from neurogshn.model.text import SentenceEncoding

        missing = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if missing:
            embeds = self.model.encode_text(missing).text_embeds
            self._memo.update(zip(missing, embeds))
        return SentenceEncoding(torch.stack([self._memo[t] for t in texts]))


def _keep_kinds(item: Any, kinds: set[str] | None) -> dict[str, Any]:
    """A hard-negative item as a dict, keeping the negatives of ``kinds`` only (``None``:
    every kind the item has)."""
    from neurogshn.data.tasks import item_negatives

    get = item.get if isinstance(item, Mapping) else (lambda k: getattr(item, k, None))
    out = {k: get(k) for k in ("image_id", "caption_index", "caption")}
    out.update({k: v for k, v in item_negatives(item).items() if kinds is None or k in kinds})
    return out


#: Retrieval rows of the summary table; the hard-negative rows follow (one per
#: ``<kind>_acc`` present, :func:`summary_rows`), then :data:`SUMMARY_TAIL`.
SUMMARY_ROWS: tuple[tuple[str, str], ...] = (
    ("i2t_R@1", "image→text R@1"),
    ("i2t_R@5", "image→text R@5"),
    ("i2t_R@10", "image→text R@10"),
    ("t2i_R@1", "text→image R@1"),
    ("t2i_R@5", "text→image R@5"),
    ("t2i_R@10", "text→image R@10"),
)
SUMMARY_TAIL: tuple[tuple[str, str], ...] = (("rsum", "rsum (max 600)"),)


def summary_rows(*metrics: Mapping[str, float] | None) -> list[tuple[str, str]]:
    """``(key, label)`` rows of the summary table: :data:`SUMMARY_ROWS`, one row per
    hard-negative kind any of ``metrics`` reports (``<kind>_acc``, in order of first
    appearance; :func:`~neurogshn.tasks.metrics.hard_negative_kinds`), then
    :data:`SUMMARY_TAIL`."""
    from neurogshn.tasks.metrics import hard_negative_kinds

    kinds: dict[str, None] = {}
    for m in metrics:
        if m is not None:
            kinds.update(dict.fromkeys(hard_negative_kinds(m)))
    rows = [(f"{k}_acc", f"{k.replace('_', ' ')} hard-neg. acc. (ITC)") for k in kinds]
    return [*SUMMARY_ROWS, *rows, *SUMMARY_TAIL]


def summary_table(untrained: Mapping[str, float] | None, trained: Mapping[str, float]) -> str:
    """Untrained vs trained figures side by side (percent for recalls and accuracies)."""

    def fmt(metrics: Mapping[str, float] | None, key: str) -> str:
        if metrics is None or key not in metrics or math.isnan(metrics[key]):
            return "—"
        v = metrics[key]
        return f"{v:.1f}" if key == "rsum" else f"{100 * v:.1f} %"

    rows = summary_rows(trained)
    width = max(len(label) for _, label in rows)
    lines = [
        f"{'metric':<{width}}  {'untrained':>10}  {'trained':>10}",
        f"{'-' * width}  {'-' * 10}  {'-' * 10}",
    ]
    for key, label in rows:
        if key in trained:
            lines.append(f"{label:<{width}}  {fmt(untrained, key):>10}  {fmt(trained, key):>10}")
    if any(key.endswith("_acc") and key in trained for key, _ in rows):
        lines.append(
            "(ITC: hard negatives scored by embedding cosine, chance 50 %; ITM-head figures: "
            "`neurogshn evaluate --task retrieval`)"
        )
    return "\n".join(lines)


def skipped_notes(
    cfg: TrainConfig, train_graphs: Any, train_coco: Any, eval_graphs: Any, eval_coco: Any
) -> list[str]:
    """One line per data source that a lenient read skipped records of, naming them
    (:func:`~neurogshn.data.coco.describe_skipped`)."""
    from neurogshn.data.coco import describe_skipped

    sources = [
        (f"the {cfg.data.train_split} annotations", train_coco),
        (f"the {cfg.data.train_split} graphs", train_graphs),
        (f"the {cfg.data.eval_split} annotations", eval_coco),
        (f"the {cfg.data.eval_split} graphs", eval_graphs),
    ]
    notes = []
    for what, source in sources:
        note = describe_skipped(what, list(getattr(source, "skipped", None) or []))
        if note:
            notes.append(note)
    return notes


def resolve_run_dir(out: str | None, resume: bool, runs_dir: str | Path) -> Path:
    """``--out`` as given; otherwise a new timestamped run under ``runs_dir`` (the config's
    ``checkpoint.out_dir``; with ``--resume``: the newest existing run there)."""
    runs_dir = Path(runs_dir)
    if out:
        return Path(out)
    if resume:
        existing = sorted(
            p
            for p in runs_dir.glob("*")
            if (p / "checkpoints").is_dir() and not p.is_symlink()  # not the `latest` link
        )
        if not existing:
            raise ConfigError(f"--resume: no run with checkpoints under {runs_dir}; pass --out")
        return existing[-1]
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return runs_dir / stamp


#: Name of the link, next to a config's timestamped runs, to the newest finished run.
LATEST_LINK = "latest"


def link_latest(run_dir: Path) -> Path | None:
    """Point ``<runs dir>/latest`` at ``run_dir`` (replacing the link atomically), so that
    ``runs/<name>/latest/final`` is always the newest finished run's model; ``None`` where a
    link cannot be made (the run is complete all the same)."""
    link = run_dir.parent / LATEST_LINK
    if link.exists() and not link.is_symlink():
        return None  # a user's own directory of that name: leave it alone
    tmp = run_dir.parent / f".{LATEST_LINK}.{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(run_dir.name, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)
        return None
    return link


def run_pretraining(
    cfg: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    log: Any = print,
    link_latest_run: bool = False,
) -> PretrainOutcome:
    """Run the whole job (see the module docstring). Under torchrun every rank calls this.
    ``link_latest_run``: once the final model is saved, point ``<runs dir>/latest`` at
    ``run_dir`` (:func:`link_latest`; the CLI does it for runs it named itself)."""
    from neurogshn.training.data import PretrainingData, PretrainItemSource, load_hard_negatives
    from neurogshn.training.trainer import Trainer

    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    device = resolve_device(None if cfg.device == "auto" else cfg.device)
    info = init_distributed(device)
    device = local_device(device, info)
    run_dir = Path(run_dir)
    say = log if info.is_main else (lambda *a, **k: None)
    try:
        ckpt_root = run_dir / "checkpoints"
        if not resume and ckpt_root.is_dir() and any(ckpt_root.iterdir()):
            raise ConfigError(
                f"{run_dir} already holds checkpoints: pass --resume to continue it or "
                "--out for a new run"
            )
        check_init_from(cfg)
        check_model_config(cfg)
        set_determinism(cfg)
        t = time.perf_counter()
        root = ensure_scenes(cfg, info, say)
        timings["data_s"] = time.perf_counter() - t
        t = time.perf_counter()
        train_graphs = load_split(cfg, root, cfg.data.train_split, info, device)
        eval_graphs = (
            load_split(cfg, root, cfg.data.eval_split, info, device) if cfg.eval.enabled else None
        )
        timings["graphs_s"] = time.perf_counter() - t
        train_coco = load_captions(cfg, root, cfg.data.train_split)
        hn_path = hard_negatives_path(root, cfg.data.train_split)
        hard_negs = load_hard_negatives(hn_path, train_coco.captions) if hn_path.is_file() else {}
        if not hard_negs:
            say(f"note: no hard negatives in {hn_path}; ITM gets none")
        else:
            present = {kind for negs in hard_negs.values() for kind in negs}
            wanted = cfg.data.hard_negative_kinds or []
            absent = list(dict.fromkeys(k for k in wanted if k not in present))
            if absent:
                say(f"note: {hn_path} has no {', '.join(absent)} negatives; training without them")
        source = PretrainItemSource(
            train_graphs,
            train_coco.captions,
            hard_negs,
            where=f"{root} (split {cfg.data.train_split!r})",
        )
        data = PretrainingData(
            source,
            batch_size=cfg.schedule.batch_size,
            seed=cfg.seed,
            rank=info.rank,
            world_size=info.world_size,
            kinds=cfg.data.hard_negative_kinds,
            max_images=cfg.data.max_train_images,
        )
        if resume:
            keep_legacy_itm_head(cfg, ckpt_root, say)
        seed_everything(cfg.seed)  # model init does not depend on what ran before
        model = build_model(cfg, train_graphs).to(device)
        objective = prepare_objective(model, source, train_coco)
        if source.groundings is not None:
            n_caps = sum(len(c) for c in train_coco.captions.values())
            say(f"grounding: {len(source.groundings)} of {n_caps} training captions name a segment")
        say(
            f"model: {sum(p.numel() for p in model.parameters() if p.requires_grad):,} "
            f"trainable parameters; {data.num_images} training images, "
            f"{data.steps_per_epoch} steps/epoch x {info.world_size} process(es); device {device}"
        )

        eval_coco = None
        untrained = None
        if cfg.eval.enabled and info.is_main:
            eval_coco = load_captions(cfg, root, cfg.data.eval_split)
            if cfg.eval.untrained and not resume:
                t = time.perf_counter()
                untrained = evaluate(cfg, model, eval_graphs, eval_coco, root, device)
                timings["eval_untrained_s"] = time.perf_counter() - t
                write_partial_results(run_dir, untrained)
        barrier(info)
        if cfg.data.warm_text_cache:
            t = time.perf_counter()
            n_texts = warm_text_cache(model, source, cfg.data.hard_negative_kinds)
            timings["text_cache_s"] = time.perf_counter() - t
            say(
                f"text cache: {n_texts} training captions and hard negatives encoded "
                f"({timings['text_cache_s']:.0f} s)"
            )
        seed_everything(cfg.seed)

        trainer = Trainer(model, objective, data, cfg, run_dir, device, info)
        if resume:
            if trainer.resume():
                say(f"resumed from {trainer.resumed_from} (step {trainer.step})")
            else:
                say(f"--resume: no checkpoint in {run_dir / 'checkpoints'}; starting fresh")
        t = time.perf_counter()
        result = trainer.fit()
        timings["train_s"] = time.perf_counter() - t
        final_dir = trainer.save_model(run_dir / "final")
        if link_latest_run and info.is_main:
            link_latest(run_dir)

        trained = None
        if cfg.eval.enabled and info.is_main:
            t = time.perf_counter()
            trained = evaluate(cfg, model, eval_graphs, eval_coco, root, device)
            timings["eval_trained_s"] = time.perf_counter() - t
            if untrained is None and resume:
                prev = _previous_results(run_dir)
                untrained = prev.get("untrained") if prev else None
        timings["total_s"] = time.perf_counter() - t_start
        skipped = skipped_notes(cfg, train_graphs, train_coco, eval_graphs, eval_coco)
        if info.is_main:
            write_json_atomic(
                run_dir / RESULTS_FILE,
                {
                    "untrained": untrained,
                    "trained": trained,
                    "steps": result.steps,
                    "epochs": result.epochs_completed,
                    "train_graphs_per_s": result.graphs_per_s,
                    "world_size": info.world_size,
                    "rank_weight_digests": result.rank_weight_digests,
                    "device": str(device),
                    "timings_s": timings,
                    "skipped": skipped,
                    "final_dir": str(final_dir),
                    "last_log": result.last_metrics,
                },
            )
        return PretrainOutcome(run_dir, final_dir, untrained, trained, result, timings, skipped)
    finally:
        cleanup_distributed()


def _previous_results(run_dir: Path) -> dict[str, Any] | None:

    path = run_dir / RESULTS_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_partial_results(run_dir: Path, untrained: Mapping[str, float] | None) -> None:
    """Record the untrained figures early, so a resumed run can still print them."""
    write_json_atomic(run_dir / RESULTS_FILE, {"untrained": untrained, "trained": None})
