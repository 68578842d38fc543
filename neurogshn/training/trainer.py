r"""The training loop: AdamW, warm-up + cosine schedule, clipping, logs, checkpoints, exact resume.

One optimizer step:

1. batch ``b`` of epoch ``e`` from :class:`~neurogshn.training.data.PretrainingData` (a pure
   function of the seed, ``e``, ``b`` and the rank);
2. ``out = objective(model, batch)`` through :class:`~neurogshn.training.distributed.LossModule`
   (wrapped in DDP under torchrun), ``out["loss"].backward()``;
3. global-norm clipping, ``AdamW.step()``, ``scheduler.step()``.

Rank 0 writes a CSV log (``log.csv``: step, epoch, every loss term, lr, gradient norm, fusion
ratio, spike rate, graphs/s, elapsed seconds), shows a tqdm bar and writes checkpoints every
``checkpoint.every_steps`` steps (see :mod:`neurogshn.training.checkpoint`). A resumed run
restores weights, optimizer, scheduler and RNG states and the data position, so it continues
bit for bit where the checkpoint was taken (on CPU, same thread count).

Each phase of a step runs under a ``torch.profiler.record_function`` label (``train/batch``,
``train/forward``, ``train/backward``, ``train/optimizer``, ``train/checkpoint``; inside the
forward, the objective's ``model/encode_image``, ``model/encode_text`` and ``loss/<name>``), so
a ``torch.profiler`` trace of a run reads as the job's phases
(``benchmarks/profile_pretrain.py``).
"""

from __future__ import annotations

import csv
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.profiler import record_function

from neurogshn.errors import CheckpointError
from neurogshn.training.checkpoint import (
    TRAIN_CONFIG_FILE,
    CheckpointManager,
    load_module_tensors,
    module_tensors,
    save_model_weights,
)
from neurogshn.training.config import TrainConfig
from neurogshn.training.data import PretrainingData
from neurogshn.training.distributed import (
    DistInfo,
    LossModule,
    all_reduce_mean,
    barrier,
    broadcast_flag,
    gather_objects,
    gather_rng_states,
    wrap_ddp,
)
from neurogshn.utils.io import atomic_path, write_json_atomic

#: Config keys that may differ between a checkpoint and the run resuming from it.
RESUME_MAY_DIFFER: tuple[str, ...] = (
    "device",
    "threads",
    "log",
    "eval",
    "checkpoint.out_dir",
    "checkpoint.every_steps",
    "checkpoint.keep_last",
    "data.root",
    "data.generate_if_missing",
    "data.max_eval_images",
    "data.eval_split",
    "graph.cache_dir",
)

LOG_FILE = "log.csv"


def warmup_cosine(total_steps: int, warmup: float, min_ratio: float) -> Callable[[int], float]:
    """Multiplier of the peak lr at step ``s``: linear warm-up, then cosine to ``min_ratio``.

    ``warmup`` below 1 is a fraction of ``total_steps``.
    """
    w = round(warmup * total_steps) if 0 < warmup < 1 else int(warmup)
    w = max(0, min(w, total_steps - 1))

    def factor(step: int) -> float:
        if step < w:
            return (step + 1) / w
        progress = min(1.0, (step - w) / max(1, total_steps - w))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def is_text_parameter(name: str) -> bool:
    """Parameters of the text encoder (they may get their own learning rate)."""
    name = name.removeprefix("model.")
    return name.startswith(("text_encoder.", "text.", "text_model."))


def parameter_groups(module: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: {text, other} × {decay, no decay (biases, norms, scalars)} × the
    ``optim.lr_scale`` prefix that applies (longest first; none: scale 1)."""
    prefixes = sorted(cfg.optim.lr_scale, key=len, reverse=True)
    groups: dict[tuple[bool, bool, str], list[nn.Parameter]] = {}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim < 2 or "norm" in name.lower() or name.endswith(".bias")
        bare = name.removeprefix("model.")
        prefix = next((x for x in prefixes if bare.startswith(x)), "")
        groups.setdefault((is_text_parameter(name), no_decay, prefix), []).append(p)
    out = []
    for (text, no_decay, prefix), params in sorted(groups.items()):
        lr = cfg.optim.text_lr if (text and cfg.optim.text_lr is not None) else cfg.optim.lr
        label = f"{'text' if text else 'main'}{'_no_decay' if no_decay else ''}"
        out.append(
            {
                "params": params,
                "lr": lr * float(cfg.optim.lr_scale.get(prefix, 1.0)),
                "weight_decay": 0.0 if no_decay else cfg.optim.weight_decay,
                "name": f"{label}:{prefix}" if prefix else label,
            }
        )
    if not out:
        raise ValueError("the model has no trainable parameter")
    return out


def _scalar(value: Any) -> float | None:
    if isinstance(value, Tensor) and value.numel() == 1:
        return float(value.detach())
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns."""

    steps: int
    epochs_completed: float
    wall_time_s: float
    train_time_s: float
    last_metrics: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None
    graphs_per_s: float = float("nan")
    resumed_from: Path | None = None
    rank_weight_digests: list[str] = field(default_factory=list)


class Trainer:
    """Pretrains ``model`` on ``data`` with ``objective``.

    Args:
        model: the model (GSHN); moved to ``device``.
        objective: ``objective(model, batch) -> dict`` with a ``"loss"`` entry (other scalar
            entries are logged); an ``nn.Module`` objective's parameters are trained and
            checkpointed too.
        data: this rank's pretraining batches.
        config: the run's configuration (optimizer, schedule, checkpoints, logs).
        run_dir: run directory (``checkpoints/``, ``log.csv``, ``train_config.json``).
        device: where to train.
        dist_info: this process's place in a DDP job.
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Callable[[nn.Module, Any], dict[str, Tensor]],
        data: PretrainingData,
        config: TrainConfig,
        run_dir: str | Path,
        device: torch.device | str = "cpu",
        dist_info: DistInfo | None = None,
    ) -> None:
        self.config = config
        self.device = torch.device(device)
        self.dist = dist_info or DistInfo()
        self.model = model.to(self.device)
        self.objective = (
            objective.to(self.device) if isinstance(objective, nn.Module) else objective
        )
        self.data = data
        self.run_dir = Path(run_dir)
        self.loss_module = LossModule(self.model, self.objective)
        self.engine = wrap_ddp(self.loss_module, self.dist, self.device)
        sched = config.schedule
        self.total_steps = int(
            sched.max_steps if sched.max_steps is not None else sched.epochs * data.steps_per_epoch
        )
        if self.total_steps < 1:
            raise ValueError("training needs at least one step (schedule.epochs/max_steps)")
        self.optimizer = torch.optim.AdamW(
            parameter_groups(self.loss_module, config),
            lr=config.optim.lr,
            betas=tuple(config.optim.betas),
            eps=config.optim.eps,
            weight_decay=config.optim.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(self.total_steps, sched.warmup, sched.min_lr_ratio)
        )
        self.checkpoints = CheckpointManager(
            self.run_dir / "checkpoints", keep_last=config.checkpoint.keep_last
        )
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.elapsed_s = 0.0
        self.samples_seen = 0
        self.resumed_from: Path | None = None
        self._tb: Any = None

    # -- resume ----------------------------------------------------------------------------
    def resume(self, path: str | Path | None = None) -> bool:
        """Continue from ``path`` or the newest checkpoint of the run; False when none exists.

        Raises:
            CheckpointError: corrupt/truncated file, or a checkpoint of another configuration.
        """
        ckpt_dir = Path(path) if path is not None else self.checkpoints.latest()
        if ckpt_dir is None:
            return False
        ckpt = CheckpointManager.read(ckpt_dir)
        try:
            saved = TrainConfig.from_dict(ckpt.train_config, source=str(ckpt_dir))
        except Exception as exc:
            raise CheckpointError(
                ckpt_dir / TRAIN_CONFIG_FILE, f"unreadable config: {exc}"
            ) from None
        differ = self.config.diff(saved, ignore=RESUME_MAY_DIFFER)
        if differ:
            a, b = self.config.to_dict(), saved.to_dict()
            shown = "; ".join(f"{k}: checkpoint {_get(b, k)!r}, now {_get(a, k)!r}" for k in differ)
            raise CheckpointError(
                ckpt_dir / TRAIN_CONFIG_FILE,
                f"checkpoint was written with a different configuration ({shown}); resume with "
                "the same config or start a new run directory",
            )
        world = int(ckpt.trainer.get("world_size", 1))
        if world != self.dist.world_size:
            raise CheckpointError(
                ckpt_dir / "trainer.json",
                f"checkpoint comes from {world} process(es), this job has "
                f"{self.dist.world_size}: the data order would differ",
            )
        CheckpointManager.restore(
            ckpt, self.model, self.optimizer, self.scheduler, rank=self.dist.rank
        )
        load_module_tensors(self.objective, ckpt.tensors, "objective", ckpt_dir)
        t = ckpt.trainer
        self.step = int(t["step"])
        self.epoch = int(t["epoch"])
        self.batch_in_epoch = int(t["batch_in_epoch"])
        self.elapsed_s = float(t.get("elapsed_s", 0.0))
        self.samples_seen = int(t.get("samples_seen", 0))
        self.resumed_from = ckpt_dir
        if self.dist.is_main:
            self._truncate_log(self.step)
        return True

    # -- checkpoints -----------------------------------------------------------------------
    def trainer_state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "steps_per_epoch": self.data.steps_per_epoch,
            "total_steps": self.total_steps,
            "elapsed_s": self.elapsed_s,
            "samples_seen": self.samples_seen,
            "world_size": self.dist.world_size,
        }

    def save_checkpoint(self, directory: Path | None = None) -> Path | None:
        """Write a checkpoint (rank 0 only; every rank must call it under DDP)."""
        rng = gather_rng_states(self.dist)
        path = None
        if self.dist.is_main:
            path = self.checkpoints.save(
                self.step,
                self.model,
                self.optimizer,
                self.scheduler,
                self.trainer_state(),
                self.config.to_dict(),
                extra_tensors=module_tensors(self.objective, "objective"),
                rng_all_ranks=rng,
                directory=directory,
            )
        barrier(self.dist)
        return path

    # -- logging ---------------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.run_dir / LOG_FILE

    def _truncate_log(self, step: int) -> None:
        """Drop log rows after ``step`` (written by the interrupted run past its checkpoint)."""
        if not self.log_path.is_file():
            return
        with open(self.log_path, newline="") as fh:
            rows = list(csv.reader(fh))
        if not rows:
            return
        keep = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step]
        with open(self.log_path, "w", newline="") as fh:
            csv.writer(fh).writerows(keep)

    def _write_log(self, row: dict[str, float]) -> None:
        new = not self.log_path.is_file() or self.log_path.stat().st_size == 0
        if new:
            self._columns = list(row)
        elif not hasattr(self, "_columns"):
            with open(self.log_path, newline="") as fh:
                self._columns = next(csv.reader(fh))
        with open(self.log_path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self._columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: _fmt(v) for k, v in row.items()})
        if self._tb is not None:
            for k, v in row.items():
                if k not in ("step", "epoch"):
                    self._tb.add_scalar(k, v, int(row["step"]))

    def _model_stats(self, means: dict[str, float]) -> dict[str, float]:
        """Fusion ratio and mean spike rate, from the objective's diagnostics or the model."""
        stats: dict[str, float] = {}
        ratio = means.get("fusion_ratio", _scalar(getattr(self.model, "fusion_ratio", None)))
        stats["fusion_ratio"] = float("nan") if ratio is None else ratio
        rates = [v for k, v in means.items() if k.startswith("spike_rate")]
        stats["spike_rate"] = sum(rates) / len(rates) if rates else float("nan")
        return stats

    # -- the loop --------------------------------------------------------------------------
    def fit(self, stop_after: int | None = None) -> TrainResult:
        """Train until ``total_steps`` (or ``stop_after`` more steps); returns a summary."""
        from tqdm.auto import tqdm

        cfg = self.config
        is_main = self.dist.is_main
        if is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.run_dir / TRAIN_CONFIG_FILE, cfg.to_dict())
            if cfg.log.tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))
                except ImportError:
                    self._tb = None
        end = (
            self.total_steps
            if stop_after is None
            else min(self.total_steps, self.step + stop_after)
        )
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            desc="pretrain",
            unit="step",
            disable=not (is_main and cfg.log.progress),
            dynamic_ncols=True,
            mininterval=1.0,
        )
        start_wall = time.perf_counter()
        train_time = 0.0
        graphs_trained = 0
        interval: dict[str, list[float]] = {}
        last: dict[str, float] = {}
        self.engine.train()
        while self.step < end:
            if self.batch_in_epoch >= self.data.steps_per_epoch:
                self.epoch += 1
                self.batch_in_epoch = 0
            t0 = time.perf_counter()
            with record_function("train/batch"):
                batch = self.data.batch(self.epoch, self.batch_in_epoch)
                batch = _to_device(batch, self.device)
            with record_function("train/forward"):
                out = self.engine(batch)
            loss = out["loss"]
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss became {loss.item()} at step {self.step}: lower optim.lr or check data"
                )
            with record_function("train/backward"):
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
            with record_function("train/optimizer"):
                params = [p for g in self.optimizer.param_groups for p in g["params"]]
                if cfg.optim.grad_clip > 0:
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip))
                else:
                    grad_norm = float(
                        torch.linalg.vector_norm(
                            torch.stack([p.grad.norm() for p in params if p.grad is not None])
                        )
                    )
                lr = self.optimizer.param_groups[0]["lr"]
                self.optimizer.step()
                self.scheduler.step()
            dt = time.perf_counter() - t0
            n_graphs = int(batch.graphs.num_graphs) * self.dist.world_size
            self.step += 1
            self.batch_in_epoch += 1
            self.samples_seen += n_graphs
            self.elapsed_s += dt
            train_time += dt
            graphs_trained += n_graphs
            for key, value in out.items():
                v = _scalar(value)
                if v is not None:
                    interval.setdefault(key.removeprefix("diag/"), []).append(v)
            if self.step % max(1, cfg.log.every_steps) == 0 or self.step == end:
                means = {k: sum(v) / len(v) for k, v in interval.items()}
                means = all_reduce_mean(means, self.dist)
                row = {
                    "step": self.step,
                    "epoch": self.epoch + self.batch_in_epoch / self.data.steps_per_epoch,
                    **{k: means[k] for k in sorted(means, key=_column_order)},
                    "lr": lr,
                    "grad_norm": grad_norm,
                    **self._model_stats(means),
                    "graphs_per_s": n_graphs / dt if dt > 0 else float("nan"),
                    "elapsed_s": self.elapsed_s,
                }
                last = row
                interval = {}
                if is_main:
                    self._write_log(row)
                bar.set_postfix(
                    loss=f"{row['loss']:.3f}", gps=f"{row['graphs_per_s']:.0f}", refresh=False
                )
            bar.update(1)
            every = cfg.checkpoint.every_steps
            if every > 0 and self.step % every == 0 and self.step < self.total_steps:
                with record_function("train/checkpoint"):
                    self.save_checkpoint()
        bar.close()
        ckpt = None
        if self.step >= self.total_steps:
            # The final step checkpoint: resuming a finished run has nothing left to do.
            existing = self.checkpoints.path_for(self.step)
            done = broadcast_flag(existing.is_dir(), self.dist)
            ckpt = existing if done else self.save_checkpoint()
        if self._tb is not None:
            self._tb.close()
        digests = gather_objects(weight_digest(self.model), self.dist)
        return TrainResult(
            steps=self.step,
            epochs_completed=self.epoch + self.batch_in_epoch / self.data.steps_per_epoch,
            wall_time_s=time.perf_counter() - start_wall,
            train_time_s=train_time,
            last_metrics=last,
            checkpoint=ckpt,
            graphs_per_s=graphs_trained / train_time if train_time > 0 else float("nan"),
            resumed_from=self.resumed_from,
            rank_weight_digests=digests,
        )

    def save_model(self, directory: str | Path) -> Path:
        """The trained model alone (``config.json`` + ``model.safetensors``), rank 0 only."""

        directory = Path(directory)
        if self.dist.is_main:
            with atomic_path(directory) as tmp:
                save_model_weights(self.model, tmp)
                write_json_atomic(tmp / TRAIN_CONFIG_FILE, self.config.to_dict())
        barrier(self.dist)
        return directory


def weight_digest(model: nn.Module) -> str:
    """SHA-256 of all parameters and buffers (DDP ranks must agree on it after training)."""

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _column_order(key: str) -> tuple[int, str]:
    """``loss`` first, then the loss terms, then the diagnostics (alphabetically)."""
    if key == "loss":
        return (0, key)
    return (1 if key in ("itc", "cl", "stl", "itm") else 2, key)


def _to_device(batch: Any, device: torch.device) -> Any:
    if device.type == "cpu":
        return batch
    if hasattr(batch, "to"):
        return batch.to(device)
    return type(batch)(batch.graphs.to(device), batch.captions, batch.hard_negatives)


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def _get(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(part)
    return d
