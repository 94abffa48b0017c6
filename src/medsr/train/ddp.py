"""DistributedDataParallel for training: the same ``medsr train`` under ``torchrun``.

``torchrun --nproc-per-node N -m medsr train CONFIG.yaml`` (or ``medsr`` as the script)
starts N processes; each reads ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` from the
environment; :func:`medsr.distributed.setup` joins the process group (the process-group code is
shared with batch inference and lives there). Without those variables (or with
``WORLD_SIZE=1``) it is a plain single-process run and nothing does any communication.

Only rank 0 logs, validates and writes checkpoints; the others wait at a barrier. Data are
sharded by :class:`medsr.train.data.ResumableBatchSampler`: each global batch of
``batch_size * world`` samples is split between the ranks, so N processes with batch B see
exactly the samples one process with batch N*B sees, step by step.
"""

from __future__ import annotations

from torch import nn

from medsr.distributed import DistInfo

__all__ = ["wrap"]


def wrap(module: nn.Module, info: DistInfo) -> nn.Module:
    """``module`` in DistributedDataParallel when distributed (and it has trainable
    parameters), else itself."""
    if not info.distributed or not any(p.requires_grad for p in module.parameters()):
        return module
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids)
