"""Regions of interest for evaluation: where ``*_inside`` / ``*_outside`` metrics are taken.

A region is written ``[NAME=]KIND[:ARGS]`` on the command line and in benchmark configs:

``file`` (aliases ``brain``, ``mask``)
    the mask that ``medsr prepare`` attached to the volume (for BraTS the brain mask
    ``brainmask.nii.gz``). Rows without a mask get NaN.
``threshold:LOW,HIGH``
    HR pixels with ``LOW <= value <= HIGH`` in physical units (HU, scanner units); either
    bound may be left empty (``threshold:300,``).
``zscore:Z``
    a lesion proxy: pixels inside the attached mask whose value is more than ``Z`` standard
    deviations above the mean of the volume's voxels inside that mask. On BraTS FLAIR
    (tumour and oedema are hyperintense) this approximates the lesion; it is a proxy, not a
    segmentation. Rows without a mask get NaN.

The default NAME is the kind as written (``brain``, ``threshold``, ``zscore``); it prefixes
the result columns (``brain_ssim_inside``, ...).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

import numpy as np

from medsr.errors import ConfigError

__all__ = ["REGION_KINDS", "Region", "VolumeStats", "parse_region"]

RegionKind = Literal["file", "threshold", "zscore"]

REGION_KINDS: dict[str, RegionKind] = {
    "file": "file",
    "brain": "file",
    "mask": "file",
    "threshold": "threshold",
    "zscore": "zscore",
}
"""Accepted kind words and the kind they mean."""

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class VolumeStats:
    """Mean and standard deviation of a volume's voxels inside its mask (physical units)."""

    mean: float
    std: float


@dataclass(frozen=True)
class Region:
    """One region: ``name`` (column prefix), ``kind`` and its parameters.

    ``datasets``: when given, only rows of these datasets get the region (NaN elsewhere),
    e.g. a threshold in HU that means nothing for MR. ``volumes``: a regular expression
    searched in the ``volume_id``; only matching volumes get the region (e.g. ``Flair`` for a
    FLAIR hyperintensity proxy). ``min_pixels``: a region with fewer pixels on a slice (or
    with fewer outside it) gives NaN for that row, e.g. to keep the few scattered voxels of
    a lesion proxy on slices without a lesion out of the tables.
    """

    name: str
    kind: RegionKind
    low: float | None = None
    high: float | None = None
    z: float | None = None
    datasets: tuple[str, ...] | None = None
    volumes: str | None = None
    min_pixels: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.min_pixels, bool) or not isinstance(self.min_pixels, int):
            raise ConfigError(f"region {self.name}: min_pixels must be an integer")
        if self.min_pixels < 1:
            raise ConfigError(f"region {self.name}: min_pixels must be >= 1, got {self.min_pixels}")
        if self.volumes is not None:
            try:
                re.compile(self.volumes)
            except re.error as error:
                raise ConfigError(
                    f"region {self.name}: volumes {self.volumes!r}: {error}"
                ) from None
        if not _NAME.match(self.name):
            raise ConfigError(
                f"region name {self.name!r} must start with a letter and hold only letters, "
                "digits and underscores (it prefixes column names)"
            )
        if self.kind == "threshold":
            if self.low is None and self.high is None:
                raise ConfigError(f"region {self.name}: threshold needs LOW, HIGH or both")
            if self.low is not None and self.high is not None and self.low > self.high:
                raise ConfigError(
                    f"region {self.name}: threshold needs LOW <= HIGH, got {self.low}, {self.high}"
                )
        if self.kind == "zscore" and (self.z is None or not math.isfinite(self.z)):
            raise ConfigError(f"region {self.name}: zscore needs a finite Z, got {self.z}")

    @property
    def needs_file_mask(self) -> bool:
        return self.kind in ("file", "zscore")

    def applies_to(self, dataset: str, volume_id: str = "") -> bool:
        """Whether rows of this dataset and volume get the region."""
        if self.datasets is not None and dataset not in self.datasets:
            return False
        return self.volumes is None or re.search(self.volumes, volume_id) is not None

    def spec(self) -> str:
        """The ``NAME=KIND:ARGS`` text that :func:`parse_region` reads back."""
        if self.kind == "threshold":
            low = "" if self.low is None else f"{self.low:g}"
            high = "" if self.high is None else f"{self.high:g}"
            return f"{self.name}=threshold:{low},{high}"
        if self.kind == "zscore":
            return f"{self.name}=zscore:{self.z:g}"
        return f"{self.name}=file"

    def describe(self) -> str:
        """One sentence for reports."""
        if self.kind == "file":
            text = "the mask attached by `medsr prepare` (e.g. the BraTS brain mask)"
        elif self.kind == "threshold":
            parts = []
            if self.low is not None:
                parts.append(f"{self.low:g} <= value")
            if self.high is not None:
                parts.append(f"value <= {self.high:g}")
            text = "HR pixels with " + " and ".join(parts) + " (physical units)"
        else:
            text = (
                f"HR pixels inside the attached mask more than {self.z:g} standard deviations "
                "above the mean of the volume's masked voxels (a lesion proxy on FLAIR, not a "
                "segmentation)"
            )
        if self.datasets is not None:
            text += f"; only for dataset(s) {', '.join(self.datasets)}"
        if self.volumes is not None:
            text += f"; only for volumes matching `{self.volumes}`"
        if self.min_pixels > 1:
            text += f"; slices where it has fewer than {self.min_pixels} pixels are left out"
        return text

    def mask(
        self,
        hr: np.ndarray,
        file_mask: np.ndarray | None,
        stats: VolumeStats | None,
    ) -> np.ndarray | None:
        """The region on one HR slice ``(H, W)`` (physical units, unclipped), or ``None``
        when it cannot be made for this row (no attached mask)."""
        if self.kind == "threshold":
            out = np.ones(hr.shape, dtype=bool)
            if self.low is not None:
                out &= hr >= self.low
            if self.high is not None:
                out &= hr <= self.high
            return out
        if file_mask is None:
            return None
        if self.kind == "file":
            return file_mask.astype(bool, copy=False)
        assert stats is not None and self.z is not None
        if not stats.std > 0:
            return np.zeros(hr.shape, dtype=bool)
        return file_mask & (hr > stats.mean + self.z * stats.std)


def _number(text: str, what: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{what}: {text!r} is not a finite number")
    return value


def parse_region(
    text: str,
    *,
    datasets: tuple[str, ...] | None = None,
    volumes: str | None = None,
    min_pixels: int = 1,
) -> Region:
    """Read ``[NAME=]KIND[:ARGS]`` (see the module docstring) into a :class:`Region`."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"a region is NAME=KIND[:ARGS], got {text!r}")
    name, eq, rest = text.strip().partition("=")
    if not eq:
        name, rest = "", name
    kind_word, _, args = rest.partition(":")
    kind_word = kind_word.strip()
    if kind_word not in REGION_KINDS:
        raise ConfigError(
            f"unknown region kind {kind_word!r} in {text!r}; choose from "
            f"{', '.join(REGION_KINDS)} (file, brain and mask are the attached mask file; "
            "threshold:LOW,HIGH; zscore:Z)"
        )
    kind = REGION_KINDS[kind_word]
    name = name.strip() or kind_word
    if kind == "file":
        if args.strip():
            raise ConfigError(f"region {text!r}: {kind_word} takes no arguments")
        return Region(
            name=name, kind=kind, datasets=datasets, volumes=volumes, min_pixels=min_pixels
        )
    if kind == "threshold":
        low_text, comma, high_text = args.partition(",")
        if not comma:
            raise ConfigError(f"region {text!r}: write threshold:LOW,HIGH (a bound may be empty)")
        return Region(
            name=name,
            kind=kind,
            low=_number(low_text, f"region {text!r} LOW"),
            high=_number(high_text, f"region {text!r} HIGH"),
            datasets=datasets,
            volumes=volumes,
            min_pixels=min_pixels,
        )
    z = _number(args, f"region {text!r} Z")
    if z is None:
        raise ConfigError(f"region {text!r}: write zscore:Z, e.g. zscore:2")
    return Region(
        name=name, kind=kind, z=z, datasets=datasets, volumes=volumes, min_pixels=min_pixels
    )
