"""Process groups for any multi-process run: training and batch inference under ``torchrun``.

``torchrun --nproc-per-node N -m medsr train CONFIG.yaml`` (or ``medsr upscale`` over many
inputs) starts N processes; each reads ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` from the
environment. :func:`setup` joins the process group (NCCL on CUDA, gloo on CPU) and picks one
device per process (``cuda:LOCAL_RANK``). Without those variables (or with ``WORLD_SIZE=1``)
it is a plain single-process run and nothing here does any communication.

This module belongs to neither training nor inference: both import it (training adds the
DistributedDataParallel wrapper in :mod:`medsr.train.ddp`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from medsr.errors import ConfigError

__all__ = [
    "DistInfo",
    "any_true",
    "barrier",
    "broadcast_object",
    "gather_objects",
    "mean_value",
    "resolve_device",
    "setup",
    "teardown",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, its ``device``, and whether
    it initialised the process group itself (then :func:`teardown` destroys it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None
    owns_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer") from None


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:LOCAL_RANK`` when CUDA is available, else CPU."""
    if preference == "cpu":
        return torch.device("cpu")
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda' was asked for but no CUDA device is available")
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s)"
            )
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup(device: str = "auto", *, timeout: timedelta = timedelta(minutes=30)) -> DistInfo:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1).

    ``timeout``: how long a collective waits for the slowest rank (batch inference waits
    longer: ranks finish their shards at different times)."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    resolved = resolve_device(device, local_rank)
    if world <= 1:
        return DistInfo(device=resolved)
    backend = "nccl" if resolved.type == "cuda" else "gloo"
    owns = False
    if not dist.is_initialized():
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        dist.init_process_group(backend=backend, rank=rank, world_size=world, timeout=timeout)
        owns = True
    logger.info("rank %d of %d on %s (%s)", rank, world, resolved, backend)
    return DistInfo(
        rank=rank,
        world_size=world,
        local_rank=local_rank,
        device=resolved,
        backend=backend,
        owns_group=owns,
    )


def teardown(info: DistInfo) -> None:
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def any_true(flag: bool | torch.Tensor, info: DistInfo) -> bool:
    """True when ``flag`` is true on any rank (one all-reduce when distributed)."""
    value = torch.as_tensor(flag, dtype=torch.float32, device=info.device).reshape(())
    if info.distributed:
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def mean_value(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of a scalar over the ranks (itself when not distributed)."""
    if not info.distributed:
        return value
    value = value.detach().clone().float()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / info.world_size


def broadcast_object(value: Any, info: DistInfo) -> Any:
    """Rank 0's ``value`` (any picklable object) on every rank."""
    if not info.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(value: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank."""
    if not info.distributed:
        return [value]
    boxes: list[Any] = [None] * info.world_size
    dist.all_gather_object(boxes, value)
    return boxes
