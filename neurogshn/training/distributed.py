"""Data-parallel plumbing: ``torchrun`` environment, process group, DDP wrapping, rank helpers.

Launch (CPU, gloo backend)::

    torchrun --nproc_per_node 2 -m neurogshn.cli pretrain --config configs/tiny.json

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads them and joins the process group (``nccl`` on CUDA, ``gloo``
otherwise). Without them everything runs as a single process (rank 0 of 1).

The model is wrapped together with its objective in :class:`LossModule`, whose ``forward``
returns the loss dict: DDP synchronises gradients of everything used inside that ``forward``
(including ``model.encode_image`` / ``model.encode_text`` called by the objective).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs and progress bars."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group described by torchrun's environment (no-op for one process)."""
    world = env_world_size()
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.type == "cuda" and dist.is_nccl_available() else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, backend=backend)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_device(device: torch.device, info: DistInfo) -> torch.device:
    """One GPU per process under torchrun (``cuda:LOCAL_RANK``); CPU stays CPU."""
    if device.type == "cuda" and info.enabled and device.index is None:
        return torch.device("cuda", info.local_rank)
    return device


class LossModule(nn.Module):
    """``forward(batch) = objective(model, batch)``: the unit DDP wraps.

    Args:
        model: the model (its parameters are the ones DDP synchronises).
        objective: ``objective(model, batch) -> dict[str, Tensor]`` with a ``"loss"`` key; if it
            is an ``nn.Module`` its parameters (e.g. a learned temperature) are trained too.
    """

    def __init__(self, model: nn.Module, objective: Callable[[nn.Module, Any], dict]) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, batch: Any) -> dict[str, Tensor]:
        return self.objective(self.model, batch)


def wrap_ddp(module: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """Wrap in DistributedDataParallel when running under torchrun."""
    if not info.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    # Objectives with weight 0 (and the ITM head without hard negatives) leave parameters
    # unused in a step; DDP must then be told to look for them.
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)


def all_reduce_mean(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Average scalar metrics over ranks (identity for one process)."""
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= info.world_size
    return dict(zip(keys, t.tolist()))


def gather_rng_states(info: DistInfo) -> list[Tensor] | None:
    """torch RNG state of every rank (on all ranks), for exact resume of a DDP job."""
    if not info.enabled:
        return None
    states: list[Any] = [None] * info.world_size
    dist.all_gather_object(states, torch.get_rng_state())
    return states


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, …]`` on every rank (``[obj]`` for one process)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_flag(flag: bool, info: DistInfo) -> bool:
    """Rank 0's boolean on every rank."""
    if not info.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int64)
    dist.broadcast(t, src=0)
    return bool(t.item())
