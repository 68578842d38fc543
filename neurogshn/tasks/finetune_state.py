r"""Resume state of a fine-tuning run: what it holds, where it lives, how it is checked.

A fine-tuning output directory (see :mod:`neurogshn.tasks.finetune`) carries, next to the task
checkpoint, the state needed to continue a killed run::

    out/
        training_state.safetensors  resume state at the end of the last epoch: AdamW moments,
                                    torch (+CUDA) RNG states, the example order
        trainer.json                resume state (JSON): epoch, step in the epoch, history, the
                                    loss sums of the epoch under way, the shuffle / Python /
                                    NumPy RNG states, the task, head and fine-tune config, the
                                    training examples' count + SHA-256, the frozen backbone's
                                    SHA-256, and the size + SHA-256 of every other file
        resume/                     only while an epoch is under way: the newest mid-epoch state
            task_head.safetensors   (head; backbone config.json + model.safetensors too when
            training_state.safetensors   the backbone is trained), written every
            trainer.json                 ``FinetuneConfig.checkpoint_every`` steps

**Atomicity.** The end-of-epoch state is written with the whole output directory, and
``resume/`` on its own, each through :func:`~neurogshn.utils.io.atomic_path` (a kill leaves the
previous complete directory; the end-of-epoch rewrite drops ``resume/``). Inside a state
directory ``trainer.json`` is the last file written, so it can record every other file's size
and SHA-256. :func:`find_finetune_state` picks the newest state (``resume/`` before ``out/``).

**Integrity.** :func:`read_finetune_state` refuses a missing file, a size or SHA-256 that
differs from the recorded one, unreadable JSON / safetensors, another format or a newer
version, each as a :class:`~neurogshn.errors.CheckpointError` naming the file. A state is only
resumed by a run with the same task, head config, training examples (count + SHA-256 of ids,
images, texts, labels in order), frozen vs trained backbone (a frozen one must match the
recorded SHA-256) and every :class:`~neurogshn.tasks.finetune_config.FinetuneConfig` field but
:data:`RESUME_MAY_DIFFER` (``epochs`` may only grow); otherwise the error lists each
difference. :func:`check_output_dir` refuses to start a run over a previous one without
``resume`` / ``overwrite``. Restoring weights, AdamW moments, the example order, the position
in the epoch, the loss sums and every RNG state makes a resumed run equal an uninterrupted one
bit for bit on CPU with one thread. Nothing is pickled: tensors go to safetensors, the
rest to JSON.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from neurogshn.errors import CheckpointError, ConfigError
from neurogshn.utils.io import atomic_path
from neurogshn.utils.weights import read_safetensors

if TYPE_CHECKING:
    from neurogshn.tasks.finetune_config import FinetuneConfig
    from neurogshn.tasks.heads import TaskModel
    from neurogshn.tasks.task_data import TaskExample

#: ``task.json`` of a fine-tuned checkpoint (its presence marks a fine-tuning output).
TASK_FILE = "task.json"
HEAD_WEIGHTS_FILE = "task_head.safetensors"
# the file names of a pretraining checkpoint (neurogshn.training.checkpoint), reused
MODEL_WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "training_state.safetensors"
TRAINER_FILE = "trainer.json"
#: ``trainer.json`` format of a fine-tuning resume state (not a pretraining checkpoint).
STATE_FORMAT = "neurogshn-finetune-state"
STATE_VERSION = 1
#: Sub-directory of the output holding the newest mid-epoch resume state.
RESUME_DIR = "resume"
#: :class:`~neurogshn.tasks.finetune_config.FinetuneConfig` fields that may differ between a saved
#: state and the run resuming it (``epochs`` may only grow: a finished run can be extended).
RESUME_MAY_DIFFER: tuple[str, ...] = ("epochs", "checkpoint_every")


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
class FinetuneTrainingState:
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

    path = Path(directory)
    from neurogshn.training.checkpoint import load_json_object

    trainer_path = path / TRAINER_FILE
    trainer = load_json_object(trainer_path, "missing: not a fine-tuning resume state")
    if trainer.get("format") != STATE_FORMAT:
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
    tensors = read_safetensors(state_path, "missing from the resume state")
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


def write_state_files(directory: Path, state: FinetuneTrainingState) -> None:
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


def save_head_weights(model: TaskModel, directory: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}
    save_file(state, str(directory / HEAD_WEIGHTS_FILE))


def _save_resume_dir(
    model: TaskModel, out: Path, state: FinetuneTrainingState, frozen: bool
) -> Path:
    """Write ``out/resume`` atomically: head (+ backbone when trained) + the state."""
    target = out / RESUME_DIR
    with atomic_path(target) as tmp:
        tmp.mkdir(parents=True)
        save_head_weights(model, tmp)
        if not frozen:
            model.backbone.save_pretrained(tmp)
        write_state_files(tmp, state)
    return target


def check_output_dir(out_dir: str | Path, resume: bool = False, overwrite: bool = False) -> None:
    """Raise :class:`~neurogshn.errors.ConfigError` when fine-tuning into ``out_dir`` with these
    flags is refused (reads nothing but directory listings; see
    :func:`~neurogshn.tasks.finetune.finetune`).

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

    state = read_safetensors(path, "missing from the resume state")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(path, f"weights do not fit this model: {exc}") from None
