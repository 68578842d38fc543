"""Pretraining configuration: small typed dataclasses that round-trip to JSON.

A :class:`TrainConfig` is built from defaults, then a JSON file (``--config FILE``), then
``--set a.b=value`` overrides, each checked against the field's declared type. Unknown keys and
ill-typed values raise :class:`~neurogshn.errors.ConfigError` naming the key (and the file).

Example::

    cfg = TrainConfig.from_json("configs/tiny.json")
    cfg = cfg.with_overrides(["optim.lr=3e-4", "schedule.epochs=2", "model.overrides.time_steps=8"])
    cfg.to_json("run/train_config.json")
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from neurogshn.errors import ConfigError
from neurogshn.graph.config import GraphConfig
from neurogshn.utils.io import write_json_atomic
from neurogshn.utils.typed_config import (
    build_dataclass,
    did_you_mean,
    strip_optional,
    type_hints,
    unknown_key_paths,
)


@dataclass
class SceneGenerationConfig:
    """Sizes of the embedded benchmark generated when ``data.root`` is empty
    (:data:`~neurogshn.data.benchmarks.DEFAULT_BENCHMARK`).

    Args:
        train: number of training images.
        val: number of validation images.
        test: number of test images (retrieval is reported on this split).
        image_size: side of the square images in pixels.
        seed: generator seed (scenes, captions and hard negatives are a function of it).
        heldout_phrasings: word ``val`` and ``test`` with phrasings the training split never
            uses, and add a ``test_seen`` split (the test scenes worded like the training
            split); figures on seen wording are then those of ``test_seen``.
    """

    train: int = 2000
    val: int = 200
    test: int = 1000
    image_size: int = 128
    seed: int = 0
    heldout_phrasings: bool = True


@dataclass
class DataConfig:
    """Where the image-caption data lives and which splits are used.

    Args:
        root: data set root (COCO panoptic layout, see docs/data.md).
        train_split: split the model is pretrained on.
        eval_split: split retrieval and hard-negative accuracy are reported on (on a
            benchmark generated with held-out phrasings, ``test`` is worded unlike the
            training split and ``test_seen`` holds the same images worded like it).
        generate_if_missing: generate the embedded scenes into ``root`` when it has no
            ``annotations/`` directory (only the example script and ``neurogshn pretrain``).
        generate: sizes of the generated benchmark.
        max_train_images: use only the first N training images (``None``: all).
        max_eval_images: evaluate on the first N images of ``eval_split`` (``None``: all).
        hard_negative_kinds: which kinds of hard negative (fields of the training split's
            ``hard_negatives_{split}.json``) a step may draw for a caption; ``None``: every
            kind the file has. A step draws one uniformly among the listed kinds the caption
            has; a kind listed ``k`` times is drawn ``k`` times as often. The benchmark's
            configs list theirs (configs/pretrain_default.json: ``relation_swap``,
            ``attribute_swap``, ``object_replace``).
        strict: stop at the first bad record instead of skipping it.
        warm_text_cache: before training, run every training caption and hard negative through
            the frozen text layers once, in a fixed order (memoised states then never depend
            on batch composition, at the cost of encoding texts a short run never samples).
    """

    root: str = "data/scenes"
    train_split: str = "train"
    eval_split: str = "test"
    generate_if_missing: bool = True
    generate: SceneGenerationConfig = field(default_factory=SceneGenerationConfig)
    max_train_images: int | None = None
    max_eval_images: int | None = None
    hard_negative_kinds: list[str] | None = None
    strict: bool = False
    warm_text_cache: bool = False


@dataclass
class ModelSpec:
    """Which GSHN to build: ``GSHN.from_config_name(name, **overrides)``.

    Args:
        name: a named model configuration of :mod:`neurogshn.model`.
        overrides: ``GSHNConfig`` fields to override (validated by the model's config); with
            ``init_from``, changes to the saved model's configuration (parameters they add
            start fresh, e.g. ``itm_attention_sink``).
        init_from: start from the weights of a checkpoint directory instead (``None``: random).
    """

    name: str = "default"
    overrides: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None


@dataclass
class LossWeights:
    """Weights of the pretraining objectives (0 turns one off; ``None`` keeps the model's).

    ITC: image-text InfoNCE; CL: spatio-temporal contrastive learning on the SNN's time
    windows; STL: Spiked Text Learning; ITM: image-text matching with hard negatives.
    """

    itc: float | None = None
    cl: float | None = None
    stl: float | None = None
    itm: float | None = None

    def as_overrides(self) -> dict[str, float]:
        """The weights that are set, as ``{name: weight}``."""
        return {k: float(v) for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass
class OptimConfig:
    """AdamW with decoupled weight decay and global-norm gradient clipping.

    Args:
        lr: peak learning rate of the graph/spiking/fusion parameters.
        text_lr: peak learning rate of the trainable text-encoder layers (``None``: ``lr``).
        weight_decay: AdamW decoupled weight decay (not applied to biases, norms, scalars).
        betas: Adam moment coefficients.
        eps: Adam epsilon.
        grad_clip: maximum global gradient L2 norm (``0``: no clipping).
        lr_scale: learning-rate multipliers by parameter-name prefix (the longest matching
            prefix wins), e.g. ``{"itm_head.token_head.": 10}`` to train a module grown
            onto a trained model (``model.overrides``) faster than the rest.
    """

    lr: float = 1e-3
    text_lr: float | None = None
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    grad_clip: float = 1.0
    lr_scale: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for prefix, scale in self.lr_scale.items():
            if not isinstance(scale, int | float) or isinstance(scale, bool) or not scale > 0:
                raise ConfigError(
                    f"optim.lr_scale[{prefix!r}] must be a positive number, got {scale!r}"
                )


@dataclass
class ScheduleConfig:
    r"""Length of training and the learning-rate schedule.

    Linear warm-up over ``warmup`` steps then cosine decay to ``min_lr_ratio·lr``:

    .. math::
        \eta(s) = \eta_0 \cdot \begin{cases} (s+1)/W & s < W \\
        m + (1-m)\,\tfrac12\bigl(1+\cos(\pi\,\tfrac{s-W}{S-W})\bigr) & s \ge W\end{cases}

    Args:
        epochs: passes over the training split.
        max_steps: stop after this many optimizer steps (``None``: ``epochs`` decide).
        batch_size: images per step per process (each with one caption and its hard negative).
        warmup: linear warm-up length W in steps (a value below 1 is a fraction of all steps).
        min_lr_ratio: final learning rate as a fraction of the peak.
    """

    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 64
    warmup: float = 0.05
    min_lr_ratio: float = 0.05


@dataclass
class CheckpointConfig:
    """Checkpointing of a run.

    Args:
        out_dir: where runs go: each run writes ``<out_dir>/<UTC timestamp>/`` (checkpoints,
            ``log.csv``, ``train_config.json``, ``final/``) unless ``--out`` names the run
            directory; ``--resume`` without ``--out`` continues the newest run here.
        every_steps: write a checkpoint every N optimizer steps (``0``: only the final one).
        keep_last: keep the newest K step checkpoints (the ``final`` one is always kept).
    """

    out_dir: str = "runs/pretrain_stl"
    every_steps: int = 100
    keep_last: int = 2


@dataclass
class LogConfig:
    """Logging: progress bar, CSV log every N steps, optional TensorBoard (if importable)."""

    every_steps: int = 5
    progress: bool = True
    tensorboard: bool = False


@dataclass
class EvalConfig:
    """Evaluation after (and, with ``untrained``, before) pretraining.

    Args:
        enabled: evaluate retrieval and hard-negative accuracy at the end.
        untrained: also evaluate the freshly initialised model, for the side-by-side table.
        batch_size: images (and captions) per forward pass.
        recall_ks: the K of recall@K.
        hard_negative_kinds: kinds of hard negative whose accuracy is reported (each costs
            one text encoding per caption of the evaluation split); ``None``: every kind of
            the evaluation split's file, ``[]``: none.
    """

    enabled: bool = True
    untrained: bool = True
    batch_size: int = 128
    recall_ks: list[int] = field(default_factory=lambda: [1, 5, 10])
    hard_negative_kinds: list[str] | None = None


@dataclass
class TrainConfig:
    """Everything a pretraining run depends on (saved as ``train_config.json`` in the run).

    Args:
        data, graph, model, loss, optim, schedule, checkpoint, log, eval: the sections above.
        seed: seeds model initialisation, data order, caption and hard-negative sampling.
        device: ``"auto"`` (CUDA if present), ``"cpu"``, ``"cuda"``, ``"cuda:1"`` …
        deterministic: ``torch.use_deterministic_algorithms`` (warn-only) and seeded everything.
        threads: torch intra-op threads (``0``: leave torch's default).
    """

    data: DataConfig = field(default_factory=DataConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    model: ModelSpec = field(default_factory=ModelSpec)
    loss: LossWeights = field(default_factory=LossWeights)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    device: str = "auto"
    deterministic: bool = True
    threads: int = 0

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-able dict (nested sections as dicts)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> TrainConfig:
        """Build from a (possibly partial) dict; unknown keys (with the closest valid ones)
        and bad types raise ConfigError."""
        unknown = unknown_key_paths(data, cls)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(unknown)}{did_you_mean(unknown[0], cls)}"
            )
        return build_dataclass(cls, data, prefix="", source=source)

    def to_json(self, path: str | PathLike[str]) -> None:
        """Write the config as JSON (atomically)."""

        write_json_atomic(path, self.to_dict())

    @classmethod
    def from_json(cls, path: str | PathLike[str]) -> TrainConfig:
        """Read a (possibly partial) JSON config; missing keys keep their defaults."""
        data = read_json_file(path, "config")
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a config file must hold a JSON object")
        return cls.from_dict(data, source=str(path))

    def with_overrides(self, assignments: list[str] | tuple[str, ...]) -> TrainConfig:
        """Apply ``key.path=value`` assignments (``--set``); returns a new config.

        The value is parsed as JSON when it parses (``3e-4``, ``true``, ``null``, ``[1,5]``),
        otherwise taken as a string, then checked against the field's type. Keys below a
        ``dict`` field (``model.overrides.time_steps=8``) are free-form.
        """
        data = self.to_dict()
        for assignment in assignments:
            key, sep, raw = assignment.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ConfigError(f"--set {assignment!r}: expected key.path=value")
            try:
                value: Any = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
            _assign(data, type(self), key.split("."), value, key)
        return TrainConfig.from_dict(data, source="--set")

    def diff(self, other: TrainConfig, ignore: tuple[str, ...] = ()) -> list[str]:
        """Dotted keys whose values differ between two configs (``ignore``: key prefixes)."""
        a, b = _flatten(self.to_dict()), _flatten(other.to_dict())
        keys = sorted(set(a) | set(b))
        return [
            k
            for k in keys
            if a.get(k) != b.get(k) and not any(k == p or k.startswith(p + ".") for p in ignore)
        ]


def read_json_file(path: str | PathLike[str], what: str) -> Any:
    """The JSON content of a ``what`` file (``config``, ``recipe`` …); ConfigError naming the
    file when it is missing, unreadable or not JSON."""
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: {what} file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read {what} file: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: not valid JSON: {exc}") from None


# ------------------------------------------------------------------------------------------
def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _assign(data: dict[str, Any], cls: Any, parts: list[str], value: Any, full: str) -> None:
    """Set ``data[parts...] = value`` after checking that the path exists in ``cls``."""
    head, rest = parts[0], parts[1:]
    if cls is dict or typing.get_origin(cls) is dict:
        if rest:
            sub = data.setdefault(head, {})
            if not isinstance(sub, dict):
                raise ConfigError(f"--set {full}: {head!r} is not a mapping")
            _assign(sub, dict, rest, value, full)
        else:
            data[head] = value
        return
    if not dataclasses.is_dataclass(cls):
        raise ConfigError(f"--set {full}: {head!r} is below a non-section value")
    hints = type_hints(cls)
    if head not in hints:
        known = ", ".join(sorted(hints))
        raise ConfigError(
            f"--set {full}: unknown key {head!r} (known here: {known})"
            f"{did_you_mean(full, TrainConfig)}"
        )
    if not rest:
        data[head] = value
        return
    sub_type = strip_optional(hints[head])
    if data.get(head) is None:
        data[head] = {}
    _assign(data[head], sub_type, rest, value, full)
