"""How the engine gets its batches: a narrow dataset interface, a resumable sharded sampler.

**Dataset interface.** The engine needs only a map-style ``torch.utils.data.Dataset``:

- training items: dicts with ``"lr"`` ``(C, h, w)`` and ``"hr"`` ``(1, H, W)`` float tensors
  in [0, 1] (other keys are carried along and ignored); an optional ``set_epoch(e)``
  method is called before each epoch (samples that seed themselves from the epoch and
  their index, as ``medsr.data.SRDataset`` does, then give the same data on resume);
- validation items: the same keys for a whole slice, plus optionally ``"normaliser"`` (the
  dict of ``medsr.transforms.intensity``, to compute metrics in physical units).

:func:`build_datasets` makes both from the config with ``medsr.data.SRDataset`` (a
``medsr prepare`` output folder); tests and scripts may pass any such datasets instead.

**Order.** :class:`ResumableBatchSampler` draws one permutation per epoch from
``(seed, epoch)`` (its own generator: no global RNG), cuts it into global batches of
``batch_size * world_size`` (the last partial batch is dropped) and gives rank ``r`` the
items ``r, r + world, ...`` of each global batch. It starts at any batch of the epoch, which
is how a resumed run continues exactly where the saved state stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from medsr.errors import ConfigError
from medsr.train.config import DataConfig

__all__ = [
    "BatchStream",
    "ResumableBatchSampler",
    "build_datasets",
    "build_degradation_from_config",
    "build_modality_degradations",
    "centre_crop_pair",
    "validation_indices",
]

logger = logging.getLogger(__name__)


class ResumableBatchSampler(Sampler[list[int]]):
    """Per-epoch seeded permutation, global batches split between ranks, resumable."""

    def __init__(
        self,
        num_samples: int,
        *,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
    ) -> None:
        self.num_samples = int(num_samples)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.shuffle = shuffle
        self.global_batch = self.batch_size * self.world_size
        if self.num_samples < self.global_batch:
            raise ConfigError(
                f"the training set has {self.num_samples} samples, fewer than one global batch "
                f"({self.batch_size} x {self.world_size} processes); lower data.batch_size or "
                "raise data.patches_per_slice"
            )
        self.epoch = 0
        self.start = 0

    @property
    def batches_per_epoch(self) -> int:
        return self.num_samples // self.global_batch

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate epoch ``epoch`` from its batch ``start``."""
        if not 0 <= start <= self.batches_per_epoch:
            raise ConfigError(f"batch {start} outside an epoch of {self.batches_per_epoch}")
        self.epoch = int(epoch)
        self.start = int(start)

    def permutation(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.num_samples)
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % (2**63))
        return torch.randperm(self.num_samples, generator=g)

    def __iter__(self) -> Iterator[list[int]]:
        order = self.permutation(self.epoch)
        for b in range(self.start, self.batches_per_epoch):
            chunk = order[b * self.global_batch : (b + 1) * self.global_batch]
            yield chunk[self.rank :: self.world_size].tolist()

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start


class _EpochBatches(Sampler[list[tuple[int, int]]]):
    """Batches of ``(epoch, index)`` pairs from epoch ``epoch``, batch ``start`` on, forever:
    one DataLoader (and one set of workers) serves the whole run."""

    def __init__(self, sampler: ResumableBatchSampler, epoch: int, start: int) -> None:
        self.sampler = sampler
        self.epoch = epoch
        self.start = start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, start = self.epoch, self.start
        while True:
            self.sampler.set_epoch(epoch, start=start)
            for batch in self.sampler:
                yield [(epoch, index) for index in batch]
            epoch, start = epoch + 1, 0


class _EpochDataset(Dataset):
    """``dataset[(epoch, index)]``: sets the epoch (on this process's or worker's copy)
    before fetching, so persistent workers follow the epochs without being restarted."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self._epoch: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if epoch != self._epoch:
            set_epoch = getattr(self.dataset, "set_epoch", None)
            if callable(set_epoch):
                set_epoch(epoch)
            self._epoch = epoch
        return self.dataset[index]


class BatchStream:
    """An endless stream of training batches over epochs; ``state()`` is the position
    (epoch, batches consumed in it) and a stream built from it continues exactly there.

    One DataLoader serves all epochs (its workers live as long as the stream), fed with
    ``(epoch, index)`` pairs; the dataset's ``set_epoch`` is called in whichever process
    loads the item.
    """

    def __init__(
        self,
        dataset: Dataset,
        sampler: ResumableBatchSampler,
        *,
        num_workers: int = 0,
        pin_memory: bool = False,
        seed: int = 0,
        epoch: int = 0,
        position: int = 0,
    ) -> None:
        self.dataset = dataset
        self.sampler = sampler
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.seed = seed
        per_epoch = sampler.batches_per_epoch
        if not 0 <= position <= per_epoch:
            raise ConfigError(f"data position {position} outside an epoch of {per_epoch} batches")
        self._origin = int(epoch) * per_epoch + int(position)
        self._consumed = 0
        self._iterator: Iterator[Any] | None = None

    def _start(self) -> None:
        per_epoch = self.sampler.batches_per_epoch
        epoch, start = divmod(self._origin, per_epoch)
        loader = DataLoader(
            _EpochDataset(self.dataset),
            batch_sampler=_EpochBatches(self.sampler, epoch, start),
            num_workers=self.num_workers,
            collate_fn=default_collate,
            pin_memory=self.pin_memory,
            worker_init_fn=_worker_init if self.num_workers > 0 else None,
            # its own generator: creating an iterator must not draw from the global RNG
            generator=torch.Generator().manual_seed(self.seed),
            persistent_workers=False,
        )
        self._iterator = iter(loader)

    def next(self) -> Any:
        if self._iterator is None:
            self._start()
        assert self._iterator is not None
        batch = next(self._iterator)
        self._consumed += 1
        return batch

    def state(self) -> dict[str, int]:
        epoch, position = divmod(self._origin + self._consumed, self.sampler.batches_per_epoch)
        return {"epoch": epoch, "position": position}

    def close(self) -> None:
        self._iterator = None


def _worker_init(worker_id: int) -> None:
    # Workers run in parallel already; more threads per worker only fight over the cores.
    torch.set_num_threads(1)


# ------------------------------------------------------------------------------- the datasets
def build_degradation_from_config(data: DataConfig):
    """The ``Degradation`` named by ``data.degradation`` (a YAML path or inline stages)."""
    return _degradation(data.degradation, "data.degradation")


def build_modality_degradations(data: DataConfig) -> dict[str, Any]:
    """Modality -> ``Degradation`` from ``data.modality_degradation``."""
    return {
        modality: _degradation(spec, f"data.modality_degradation.{modality}")
        for modality, spec in data.modality_degradation.items()
    }


def _degradation(spec: str | list[dict[str, Any]], where: str):
    from medsr.transforms.degrade import build_degradation, load_degradation

    if isinstance(spec, str):
        return load_degradation(spec)
    try:
        return build_degradation(spec)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from error


def build_datasets(
    data: DataConfig, *, seed: int, degradation, modality_degradations=None
) -> tuple[Dataset, Dataset | None]:
    """Training and validation datasets from a ``medsr prepare`` output (``data.manifest``).

    The validation dataset is None when ``data.val_split`` is null or the split is empty
    (a warning says so).
    """
    try:
        from medsr.data.datasets import SRDataset
    except ImportError as error:  # pragma: no cover - medsr.data ships with medsr
        raise ConfigError(f"the dataset pipeline medsr.data is not available: {error}") from error

    common: dict[str, Any] = {
        "degradation": degradation,
        "modality_degradations": modality_degradations,
        "neighbours": data.neighbours,
        "seed": seed,
        "datasets": data.datasets,
    }
    train = SRDataset(
        data.manifest,
        split=data.train_split,
        mode="train",
        patch_size=data.patch_size,
        augment=data.augment,
        patches_per_slice=data.patches_per_slice,
        min_patch_foreground=data.min_patch_foreground,
        foreground_tries=data.foreground_tries,
        dataset_repeats=data.dataset_repeats or None,
        intensity_scale=data.intensity_scale,
        **common,
    )
    val = None
    if data.val_split is not None:
        try:
            val = SRDataset(data.manifest, split=data.val_split, mode="eval", **common)
        except ConfigError as error:
            logger.warning("no validation: %s", error)
    return train, val


def validation_indices(length: int, limit: int | None) -> list[int]:
    """``limit`` indices evenly spaced over ``range(length)`` (all when None)."""
    if limit is None or limit >= length:
        return list(range(length))
    return sorted({int(i) for i in np.linspace(0, length - 1, limit).round()})


def centre_crop_pair(
    lr: torch.Tensor, hr: torch.Tensor, size: int | None, factors: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The centre ``size`` x ``size`` HR crop (rounded down to multiples of ``factors``) and
    the LR region that maps onto it exactly. ``lr`` (C, h, w), ``hr`` (1, H, W)."""
    if size is None:
        return lr, hr
    fh, fw = factors
    height, width = hr.shape[-2:]
    ch = min(size, height) // fh * fh
    cw = min(size, width) // fw * fw
    if ch == 0 or cw == 0:
        raise ConfigError(f"data.val_crop {size} is smaller than the scale factors {factors}")
    top = (height - ch) // 2 // fh * fh
    left = (width - cw) // 2 // fw * fw
    hr = hr[..., top : top + ch, left : left + cw]
    lr = lr[..., top // fh : (top + ch) // fh, left // fw : (left + cw) // fw]
    return lr, hr
