"""The PyTorch dataset of (LR, HR) pairs made on the fly from a prepared slice store.

``SRDataset(manifest, degradation=..., split="train")`` reads the slices ``medsr prepare``
stored (memory-mapped ``.npy``, one per volume), normalises them to [0, 1] with each row's
normaliser and makes the LR input with the configured degradation.

* ``mode="train"``: random HR patches of ``patch_size`` (a multiple of the scale), placed
  with a bias towards the foreground (:func:`~medsr.data.patches.foreground_origin`),
  randomly flipped and rotated by quarter turns, optionally scaled in intensity
  (``intensity_scale``), then degraded.
* ``mode="eval"``: whole slices, cropped to a multiple of the scale (the first rows and
  columns are kept, so the slice origin stays), without augmentation, with the normaliser
  dict so that metrics can be computed in physical units after ``inverse``.

Randomness: sample ``index`` of epoch ``e`` draws everything (patch position, flips, noise)
from ``item_generator(seed, e, index)``; eval samples use epoch 0 always. The result does
not depend on the worker that loads it nor on the number of workers, so workers need no
seeding of their own. Call :meth:`SRDataset.set_epoch` before each epoch (with the default
``persistent_workers=False`` the workers get the new epoch when the DataLoader starts them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, default_collate

from medsr.data.manifest import SliceRecord, manifest_path, read_manifest
from medsr.data.patches import Flip, foreground_origin, item_generator, stack_neighbours
from medsr.errors import ConfigError
from medsr.schema import unit_range
from medsr.transforms.degrade import Degradation, crop_to_multiple
from medsr.transforms.intensity import Normaliser, normaliser_from_dict

Mode = Literal["train", "eval"]


class SRDataset(Dataset):
    """Super-resolution samples from a prepared manifest.

    Each item is a dict:

    * ``lr``: ``(C, h, w)`` float32 in [0, 1], ``C = 2 * neighbours + 1`` (the slice and its
      neighbours, centre at channel ``neighbours``), ``h = H / factors[0]``, ``w = W / factors[1]``;
    * ``hr``: ``(1, H, W)`` float32 in [0, 1], the centre slice;
    * ``mask``: ``(1, H, W)`` bool, only with ``return_mask`` (all False for rows without one);
    * ``index``: the item's index.

    ``mode="eval"`` items also hold ``normaliser`` (the dict, for
    ``normaliser_from_dict(...).inverse``), ``volume_id``, ``subject_id``, ``slice_index``
    and ``spacing`` (``(spacing_y, spacing_x)`` in mm of the HR slice). Use
    :func:`collate` to batch them (slices of different sizes stay lists).

    ``dataset_repeats`` (train mode only): dataset name -> k, each slice of that dataset is
    listed k times (oversampling a small dataset in a mixed manifest).

    ``modality_degradations``: manifest modality (``MR``, ``CT``, ``DX``, ``CR``, ...) -> the
    degradation for that modality's slices instead of ``degradation`` (same scale factors).
    An acquisition model belongs to a modality: k-space truncation is how an MR image loses
    resolution, never a CT slice or a radiograph.

    ``intensity_scale`` (train mode only): ``(low, high)`` with ``0 < low <= high <= 1``; each
    HR patch is multiplied by a factor drawn uniformly from that range before it is degraded,
    so that the model sees the same anatomy at other brightnesses (another scanner's or
    normaliser's intensity range). None: no scaling.
    """

    def __init__(
        self,
        manifest: str | os.PathLike,
        *,
        degradation: Degradation,
        split: str | None = "train",
        mode: Mode = "train",
        patch_size: int = 128,
        neighbours: int = 0,
        seed: int = 0,
        augment: bool = True,
        patches_per_slice: int = 1,
        foreground_threshold: float = 0.05,
        min_patch_foreground: float = 0.5,
        foreground_tries: int = 5,
        return_mask: bool = False,
        datasets: Sequence[str] | None = None,
        dataset_repeats: Mapping[str, int] | None = None,
        modality_degradations: Mapping[str, Degradation] | None = None,
        intensity_scale: tuple[float, float] | None = None,
    ) -> None:
        if mode not in ("train", "eval"):
            raise ConfigError(f"unknown dataset mode {mode!r}; valid: train, eval")
        if not isinstance(degradation, Degradation):
            raise ConfigError(
                "degradation must be a medsr.transforms.degrade.Degradation (use "
                f"build_degradation or load_degradation), got {type(degradation).__name__}"
            )
        fh, fw = degradation.factors
        for modality, other in (modality_degradations or {}).items():
            if not isinstance(other, Degradation):
                raise ConfigError(
                    f"the degradation for modality {modality} must be a Degradation, got "
                    f"{type(other).__name__}"
                )
            if tuple(other.factors) != (fh, fw):
                raise ConfigError(
                    f"the degradation for modality {modality} has scale factors "
                    f"{tuple(other.factors)}, the default degradation {(fh, fw)}: one model "
                    "learns one scale"
                )
        if mode == "train" and (patch_size < 1 or patch_size % fh or patch_size % fw):
            raise ConfigError(
                f"patch_size {patch_size} must be a positive multiple of the scale factors "
                f"{(fh, fw)} of the degradation"
            )
        if neighbours < 0:
            raise ConfigError(f"neighbours must be >= 0 slices on each side, got {neighbours}")
        if foreground_tries < 1:
            raise ConfigError(
                f"foreground_tries must be >= 1 (1 = uniform), got {foreground_tries}"
            )
        if patches_per_slice < 1:
            raise ConfigError(f"patches_per_slice must be >= 1, got {patches_per_slice}")
        if intensity_scale is not None:
            intensity_scale = unit_range("intensity_scale", intensity_scale)
        path = manifest_path(manifest)
        self.root = path.parent
        rows = read_manifest(path)
        if split is not None:
            rows = [r for r in rows if r.split == split]
        if datasets is not None:
            unknown = sorted(set(datasets) - {r.dataset for r in rows})
            if unknown:
                raise ConfigError(f"no rows of dataset(s) {unknown} in {path} (split {split})")
            rows = [r for r in rows if r.dataset in set(datasets)]
        if not rows:
            raise ConfigError(f"{path} has no rows for split {split!r}")
        present = {r.modality for r in rows}
        unknown = sorted(set(modality_degradations or {}) - present)
        if unknown and mode == "train":  # a misspelt modality would silently change nothing
            raise ConfigError(
                f"a degradation is given for modality {', '.join(unknown)}, but no slice of "
                f"split {split!r} in {path} has it; modalities there: "
                f"{', '.join(sorted(present))}"
            )
        if dataset_repeats and mode == "train":
            bad = {k: v for k, v in dataset_repeats.items() if not isinstance(v, int) or v < 1}
            if bad:
                raise ConfigError(f"dataset_repeats must be integers >= 1, got {bad}")
            # Listing a slice k times makes it k times as likely in every epoch: the way a
            # small dataset (two radiographs) gets its share next to thousands of MR slices.
            rows = [r for r in rows for _ in range(dataset_repeats.get(r.dataset, 1))]
        self.rows: list[SliceRecord] = rows
        self.degradation = degradation
        self.modality_degradations = dict(modality_degradations or {})
        self.mode: Mode = mode
        self.patch_size = patch_size
        self.neighbours = neighbours
        self.seed = int(seed)
        self.augment = augment and mode == "train"
        self.patches_per_slice = patches_per_slice if mode == "train" else 1
        self.foreground_threshold = foreground_threshold
        self.min_patch_foreground = min_patch_foreground
        self.foreground_tries = foreground_tries
        self.return_mask = return_mask
        self.intensity_scale = intensity_scale if mode == "train" else None
        self.epoch = 0
        self._normalisers: dict[str, Normaliser] = {
            r.normaliser: normaliser_from_dict(json.loads(r.normaliser)) for r in rows
        }
        # The foreground threshold in physical units (normalisers are increasing affine maps),
        # so candidate patches are tested on the stored values without normalising them.
        self._thresholds = {
            key: float(n.inverse(np.array([foreground_threshold], np.float64))[0])
            for key, n in self._normalisers.items()
        }
        self._arrays: dict[str, np.ndarray] = {}

    # -- plumbing --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.rows) * self.patches_per_slice

    def set_epoch(self, epoch: int) -> None:
        """Training samples of a new epoch get new patches, flips and noise."""
        self.epoch = int(epoch)

    @property
    def in_channels(self) -> int:
        return 2 * self.neighbours + 1

    def __getstate__(self) -> dict[str, Any]:
        # Memory maps are opened again in each worker instead of being pickled (a pickled
        # memmap would copy its whole array).
        state = self.__dict__.copy()
        state["_arrays"] = {}
        return state

    def _array(self, relative: str) -> np.ndarray:
        array = self._arrays.get(relative)
        if array is None:
            # a plain ndarray view of the memory map: slicing it skips np.memmap's overhead
            array = np.load(self.root / relative, mmap_mode="r").view(np.ndarray)
            self._arrays[relative] = array
        return array

    def row(self, index: int) -> SliceRecord:
        return self.rows[index % len(self.rows)]

    def normaliser(self, index: int) -> Normaliser:
        return self._normalisers[self.row(index).normaliser]

    def degradation_for(self, row: SliceRecord) -> Degradation:
        """The degradation that makes ``row``'s LR: its modality's, else the default."""
        return self.modality_degradations.get(row.modality, self.degradation)

    # -- items ------------------------------------------------------------------------------------
    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} outside a dataset of {len(self)} samples")
        if self.mode == "train":
            return self._train_item(index)
        return self._eval_item(index)

    def _unit(self, row: SliceRecord, window: tuple[slice, slice] | None) -> torch.Tensor:
        volume = self._array(row.store_path)
        planes = stack_neighbours(volume, row.slice_index, self.neighbours, window=window)
        unit = self._normalisers[row.normaliser].forward(planes)
        return torch.from_numpy(np.asarray(unit, dtype=np.float32))

    def _mask(self, row: SliceRecord, window: tuple[slice, slice] | None) -> torch.Tensor:
        rows, cols = window if window is not None else (slice(None), slice(None))
        if not row.mask_path:
            shape = (len(range(row.height)[rows]), len(range(row.width)[cols]))
            return torch.zeros((1, *shape), dtype=torch.bool)
        mask = self._array(row.mask_path)[row.slice_index, rows, cols]
        return torch.from_numpy(np.array(mask, dtype=bool))[None]

    def _train_item(self, index: int) -> dict[str, Any]:
        row = self.row(index)
        g = item_generator(self.seed, self.epoch, index)
        size = self.patch_size
        shape = (row.height, row.width)
        centre = self._array(row.store_path)[row.slice_index]
        threshold = _threshold_for(self._thresholds[row.normaliser], centre.dtype)

        def foreground(top: int, left: int) -> float:
            patch = centre[top : top + size, left : left + size]
            return np.count_nonzero(patch > threshold) / max(patch.size, 1)

        top, left = foreground_origin(
            shape,
            size,
            foreground,
            g,
            min_fraction=self.min_patch_foreground,
            tries=self.foreground_tries,
        )
        window = (slice(top, top + size), slice(left, left + size))
        stack = _pad_to(self._unit(row, window), size)
        mask = _pad_to(self._mask(row, window), size) if self.return_mask else None
        if self.augment:
            flip = Flip.draw(g)
            stack = flip(stack)
            mask = flip(mask) if mask is not None else None
        if self.intensity_scale is not None:
            # Drawn after the flip, only when configured: the streams of runs without it stay.
            low, high = self.intensity_scale
            stack = stack * (low + (high - low) * float(torch.rand((), generator=g)))
        item: dict[str, Any] = self._pair(stack, g, self.degradation_for(row))
        if mask is not None:
            item["mask"] = mask
        item["index"] = index
        return item

    def _eval_item(self, index: int) -> dict[str, Any]:
        row = self.row(index)
        factors = self.degradation.factors
        stack = crop_to_multiple(self._unit(row, None), factors)
        item = self._pair(stack, item_generator(self.seed, 0, index), self.degradation_for(row))
        if self.return_mask:
            item["mask"] = crop_to_multiple(self._mask(row, None), factors)
        item.update(
            index=index,
            normaliser=row.normaliser_dict(),
            volume_id=row.volume_id,
            subject_id=row.subject_id,
            slice_index=row.slice_index,
            spacing=(row.spacing_y, row.spacing_x),
        )
        return item

    def _pair(
        self, stack: torch.Tensor, g: torch.Generator, degradation: Degradation
    ) -> dict[str, Any]:
        stack = stack.contiguous()
        lr = degradation(stack, generator=g)
        k = self.neighbours
        return {"lr": lr, "hr": stack[k : k + 1].clone()}


def _threshold_for(threshold: float, dtype: np.dtype) -> np.generic:
    """``threshold`` as a scalar of ``dtype``, so comparisons do not convert the patch; for
    integer values ``x > t`` is ``x > floor(t)``."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return dtype.type(min(max(np.floor(threshold), info.min), info.max))
    return dtype.type(threshold)


def _pad_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """Pad ``(C, h, w)`` at the bottom/right to ``size`` x ``size`` with 0 (the normalised
    background) when a slice is smaller than the patch."""
    h, w = x.shape[-2:]
    if h >= size and w >= size:
        return x
    if x.dtype == torch.bool:
        return F.pad(x.to(torch.uint8), (0, size - w, 0, size - h)).bool()
    return F.pad(x, (0, size - w, 0, size - h))


# -- loading ---------------------------------------------------------------------------------
def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch items: tensors of equal shape are stacked, anything else becomes a list.

    Unlike ``default_collate`` this keeps eval slices of different sizes (as lists of tensors)
    and normaliser dicts (as a list of dicts) intact. Integers (``index``, ``slice_index``)
    stay a list of ints: a tensor would cost the main process one more shared-memory segment
    per batch (a third of its receiving time for training batches).
    """
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if (
            all(isinstance(v, torch.Tensor) for v in values)
            and len({tuple(v.shape) for v in values}) == 1
        ):
            # default_collate stacks into shared memory inside a worker (no copy on sending)
            out[key] = default_collate(values)
        else:
            out[key] = values
    return out


def worker_init(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one torch thread per worker (the workers already run in
    parallel; more threads only fight over the cores). No seeding: samples seed themselves."""
    torch.set_num_threads(1)


def make_loader(
    dataset: SRDataset,
    *,
    batch_size: int,
    shuffle: bool | None = None,
    num_workers: int = 2,
    seed: int = 0,
    drop_last: bool | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader for ``dataset``: shuffled (train mode) by a generator seeded with ``seed``,
    single-threaded workers, :func:`collate`. Remember ``dataset.set_epoch(e)`` each epoch."""
    train = dataset.mode == "train"
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train if shuffle is None else shuffle,
        num_workers=num_workers,
        worker_init_fn=worker_init if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(int(seed)),
        collate_fn=collate,
        drop_last=train if drop_last is None else drop_last,
        pin_memory=pin_memory,
        persistent_workers=False,
    )


__all__ = ["SRDataset", "collate", "make_loader", "worker_init"]
