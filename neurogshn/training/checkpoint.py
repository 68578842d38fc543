"""Training checkpoints without pickle: model weights, optimizer, scheduler and RNG states.

A checkpoint is a directory, written atomically (a temporary directory renamed into place, so a
kill at any moment leaves either the old set of checkpoints or the new one)::

    step-00000120/
        config.json                  model config   (GSHN.save_pretrained)
        model.safetensors            model weights  (GSHN.save_pretrained)
        training_state.safetensors   optimizer moments, torch/CUDA RNG states, objective state
        trainer.json                 step, epoch, data position, optimizer hyper-parameters,
                                     scheduler state, Python/NumPy RNG states, file digests
        train_config.json            the TrainConfig of the run

Everything that is a tensor goes to safetensors; everything else is JSON. Nothing is ever
unpickled. ``trainer.json`` is written last and records the size and SHA-256 of every other file,
so a truncated or corrupted file is reported as a :class:`~neurogshn.errors.CheckpointError`
naming that file instead of being loaded silently.

The directory is itself a valid model directory: ``GSHN.from_pretrained("…/step-00000120")``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from neurogshn.errors import CheckpointError
from neurogshn.utils.io import atomic_path
from neurogshn.utils.weights import read_safetensors

FORMAT = "neurogshn-training-checkpoint"
FORMAT_VERSION = 1
STATE_FILE = "training_state.safetensors"
TRAINER_FILE = "trainer.json"
TRAIN_CONFIG_FILE = "train_config.json"
MODEL_WEIGHTS_FILE = "model.safetensors"
MODEL_CONFIG_FILE = "config.json"
_STEP_DIR = re.compile(r"^step-(\d{8,})$")


# ---------------------------------------------------------------------------------------------
# Optimizer / scheduler / RNG state <-> (tensors, JSON)
# ---------------------------------------------------------------------------------------------
def flatten_optimizer_state(state_dict: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict]:
    """Split ``optimizer.state_dict()`` into safetensors-ready tensors and a JSON-able dict.

    Tensors of the per-parameter state become ``optim.<param index>.<name>``; non-tensor
    per-parameter entries and the parameter groups go to the JSON part.
    """
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, pstate in state_dict["state"].items():
        for name, value in pstate.items():
            if isinstance(value, Tensor):
                tensors[f"optim.{int(index)}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(int(index)), {})[name] = _jsonable(value)
    groups = [{k: _jsonable(v) for k, v in g.items()} for g in state_dict["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer_state(tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> dict:
    """Inverse of :func:`flatten_optimizer_state` (tuples such as ``betas`` are restored)."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if not key.startswith("optim."):
            continue
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for index, entries in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(entries)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def capture_rng_state(all_ranks_torch: list[Tensor] | None = None) -> tuple[dict, dict]:
    """Python, NumPy, torch (CPU, per rank if given) and CUDA RNG states as (tensors, JSON)."""
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    tensors = {"rng.torch": torch.get_rng_state()}
    if all_ranks_torch is not None:
        for rank, st in enumerate(all_ranks_torch):
            tensors[f"rng.torch.rank{rank}"] = st
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = st
    meta = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_kind, np_keys.tolist(), int(np_pos), int(np_has_gauss), float(np_gauss)],
    }
    return tensors, meta


def restore_rng_state(tensors: Mapping[str, Tensor], meta: Mapping[str, Any], rank: int) -> None:
    """Restore what :func:`capture_rng_state` captured (this rank's torch state if saved)."""
    version, state, gauss = meta["python"]
    random.setstate((version, tuple(state), gauss))
    kind, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch_state = tensors.get(f"rng.torch.rank{rank}", tensors["rng.torch"])
    torch.set_rng_state(torch_state.to(torch.uint8))
    cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
    if cuda and torch.cuda.is_available():
        n = min(len(cuda), torch.cuda.device_count())
        torch.cuda.set_rng_state_all([tensors[f"rng.cuda.{i}"] for i in range(n)])


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot store {type(value).__name__} in a JSON checkpoint: {value!r}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
@dataclass
class TrainingCheckpoint:
    """A checkpoint read back from disk (validated).

    Attributes:
        path: the checkpoint directory.
        trainer: contents of ``trainer.json`` (step, epoch, data position, states).
        train_config: the run's TrainConfig as a dict.
        tensors: contents of ``training_state.safetensors``.
    """

    path: Path
    trainer: dict[str, Any]
    train_config: dict[str, Any]
    tensors: dict[str, Tensor] = field(repr=False)

    @property
    def step(self) -> int:
        return int(self.trainer["step"])

    def model_state_dict(self) -> dict[str, Tensor]:
        """The model weights (``model.safetensors``), read without pickle."""
        return read_safetensors(self.path / MODEL_WEIGHTS_FILE, "missing from the checkpoint")


def save_model_weights(model: nn.Module, directory: Path) -> None:
    """``model.save_pretrained(directory)`` when the model has it, else its state dict."""
    if hasattr(model, "save_pretrained"):
        model.save_pretrained(directory)
    else:
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(directory / MODEL_WEIGHTS_FILE))


def load_model_weights(model: nn.Module, checkpoint: TrainingCheckpoint) -> None:
    """Load a checkpoint's weights into ``model`` (every trainable parameter must be there)."""
    path = checkpoint.path / MODEL_WEIGHTS_FILE
    state = checkpoint.model_state_dict()
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatch
        raise CheckpointError(path, f"weights do not fit this model: {exc}") from None
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    missing_trainable = sorted(set(missing) & trainable)
    if unexpected or missing_trainable:
        raise CheckpointError(
            path,
            "weights are from another model configuration "
            f"(missing: {missing_trainable[:5]}, unexpected: {sorted(unexpected)[:5]})",
        )


def load_json_object(path: Path, missing: str = "missing from the checkpoint") -> dict[str, Any]:
    """A checkpoint's JSON object; CheckpointError naming ``path`` when it is absent
    (``missing`` says why that matters), unreadable, truncated or not an object."""
    if not path.is_file():
        raise CheckpointError(path, missing)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(path, f"not valid JSON (truncated?): {exc}") from None
    if not isinstance(data, dict):
        raise CheckpointError(path, "expected a JSON object")
    return data


class CheckpointManager:
    """Writes, lists, prunes and reads the step checkpoints of one run.

    Args:
        directory: where ``step-XXXXXXXX`` directories live (created on first save).
        keep_last: number of newest step checkpoints kept; older ones are deleted after a
            successful save (``0`` keeps all).
    """

    def __init__(self, directory: str | Path, keep_last: int = 2) -> None:
        self.directory = Path(directory)
        self.keep_last = int(keep_last)

    # -- listing ---------------------------------------------------------------------------
    def checkpoints(self) -> list[Path]:
        """Complete step checkpoints, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [
            (int(m.group(1)), p)
            for p in self.directory.iterdir()
            if p.is_dir() and (m := _STEP_DIR.match(p.name))
        ]
        return [p for _, p in sorted(found)]

    def latest(self) -> Path | None:
        """The newest step checkpoint, or ``None``."""
        ckpts = self.checkpoints()
        return ckpts[-1] if ckpts else None

    def path_for(self, step: int) -> Path:
        return self.directory / f"step-{step:08d}"

    # -- writing ---------------------------------------------------------------------------
    def save(
        self,
        step: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        trainer_state: Mapping[str, Any],
        train_config: Mapping[str, Any],
        extra_tensors: Mapping[str, Tensor] | None = None,
        rng_all_ranks: list[Tensor] | None = None,
        directory: Path | None = None,
    ) -> Path:
        """Write a checkpoint atomically and prune old ones; returns its directory.

        Args:
            step: optimizer steps done.
            model: the (unwrapped) model.
            optimizer, scheduler: their states are stored without pickle.
            trainer_state: JSON-able loop state (epoch, data position, elapsed time …).
            train_config: the TrainConfig as a dict.
            extra_tensors: more tensors for ``training_state.safetensors`` (e.g. the
                objective's learned parameters, prefixed ``objective.``).
            rng_all_ranks: torch RNG state of every DDP rank (index = rank).
            directory: write there instead of ``step-XXXXXXXX`` (no pruning).
        """
        target = directory if directory is not None else self.path_for(step)
        opt_tensors, opt_meta = flatten_optimizer_state(optimizer.state_dict())
        rng_tensors, rng_meta = capture_rng_state(rng_all_ranks)
        tensors = {**opt_tensors, **rng_tensors}
        for key, value in (extra_tensors or {}).items():
            tensors[key] = value.detach().cpu().contiguous()
        sched = _jsonable(scheduler.state_dict()) if scheduler is not None else None
        with atomic_path(target) as tmp:
            tmp.mkdir(parents=True)
            save_model_weights(model, tmp)
            save_file(tensors, str(tmp / STATE_FILE))
            (tmp / TRAIN_CONFIG_FILE).write_text(json.dumps(dict(train_config), indent=2) + "\n")
            files = {
                p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)}
                for p in sorted(tmp.iterdir())
                if p.is_file()
            }
            trainer = {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                **_jsonable(dict(trainer_state)),
                "step": int(step),
                "optimizer": opt_meta,
                "scheduler": sched,
                "rng": rng_meta,
                "files": files,
            }
            (tmp / TRAINER_FILE).write_text(json.dumps(trainer, indent=1) + "\n")
        if directory is None:
            self.prune()
        return target

    def prune(self) -> None:
        """Delete all but the newest ``keep_last`` step checkpoints."""
        if self.keep_last <= 0:
            return
        for old in self.checkpoints()[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)

    # -- reading ---------------------------------------------------------------------------
    @staticmethod
    def read(path: str | Path, verify: bool = True) -> TrainingCheckpoint:
        """Read and validate a checkpoint directory.

        Raises:
            CheckpointError: naming the missing, truncated or corrupted file.
        """
        path = Path(path)
        if not path.is_dir():
            raise CheckpointError(path, "checkpoint directory not found")
        trainer = load_json_object(path / TRAINER_FILE)
        if trainer.get("format") != FORMAT:
            raise CheckpointError(path / TRAINER_FILE, f"not a {FORMAT} file")
        if int(trainer.get("version", -1)) > FORMAT_VERSION:
            raise CheckpointError(
                path / TRAINER_FILE,
                f"format version {trainer['version']} is newer than this neurogshn "
                f"({FORMAT_VERSION})",
            )
        for name, info in trainer.get("files", {}).items():
            file = path / name
            if not file.is_file():
                raise CheckpointError(file, "missing from the checkpoint")
            size = file.stat().st_size
            if size != info["bytes"]:
                raise CheckpointError(
                    file,
                    f"truncated or altered: {size} bytes, the checkpoint wrote {info['bytes']}",
                )
            if verify and _sha256(file) != info["sha256"]:
                raise CheckpointError(file, "corrupted: SHA-256 differs from the one recorded")
        tensors = read_safetensors(path / STATE_FILE, "missing from the checkpoint")
        train_config = load_json_object(path / TRAIN_CONFIG_FILE)
        return TrainingCheckpoint(path, trainer, train_config, tensors)

    @staticmethod
    def restore(
        checkpoint: TrainingCheckpoint,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        rank: int = 0,
        restore_rng: bool = True,
    ) -> None:
        """Load weights, optimizer, scheduler and RNG states from a read checkpoint."""
        load_model_weights(model, checkpoint)
        state_file = checkpoint.path / STATE_FILE
        try:
            optimizer.load_state_dict(
                unflatten_optimizer_state(checkpoint.tensors, checkpoint.trainer["optimizer"])
            )
        except (KeyError, ValueError, RuntimeError) as exc:
            raise CheckpointError(
                state_file, f"optimizer state does not fit this model: {exc}"
            ) from None
        if scheduler is not None and checkpoint.trainer.get("scheduler") is not None:
            sched = dict(checkpoint.trainer["scheduler"])
            sched.pop("lr_lambdas", None)
            scheduler.__dict__.update(sched)
        if restore_rng:
            restore_rng_state(checkpoint.tensors, checkpoint.trainer["rng"], rank)


def module_tensors(module: nn.Module | Callable | None, prefix: str) -> dict[str, Tensor]:
    """State of a module (e.g. a loss with a learned temperature) under ``prefix.``."""
    if not isinstance(module, nn.Module):
        return {}
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def load_module_tensors(
    module: nn.Module | Callable | None, tensors: Mapping[str, Tensor], prefix: str, path: Path
) -> None:
    """Inverse of :func:`module_tensors`."""
    if not isinstance(module, nn.Module):
        return
    state = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    if not state and not module.state_dict():
        return
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(path, f"{prefix} state does not fit: {exc}") from None
