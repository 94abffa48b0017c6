"""The ``Image`` container: pixels in physical units plus the geometry needed to write them back.

Geometry convention (the same for every format):

* ``array`` axes are ``(Y, X)`` for a 2D image or ``(Z, Y, X)`` for a volume; a colour image
  adds a trailing axis of 3 (RGB) that carries no geometry.
* ``spacing`` is in mm, one value per spatial axis, in array order.
* ``origin`` is the patient-space position (DICOM LPS, mm) of the centre of the first voxel.
* ``direction`` is a ``(3, ndim)`` matrix whose column ``d`` is the LPS unit vector along
  spatial array axis ``d`` (so for DICOM, column ``-1`` is the row direction cosine of
  ImageOrientationPatient and column ``-2`` the column direction cosine).

``voxel_to_patient(index) = origin + direction @ (spacing * index)``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsr.errors import GeometryError

# Default cap on pixels (voxels) per image: 2**29 float32 values are 2 GiB in memory.
MAX_PIXELS = int(os.environ.get("MEDSR_MAX_PIXELS", 2**29))


@dataclass(frozen=True, eq=False)
class Source:
    """Where an image came from and what is needed to write it back in the same form.

    ``datasets`` holds, for DICOM, one pydicom ``Dataset`` per slice (pixel data removed) in
    array order, or a single multi-frame dataset with ``frame_order`` giving, for each array
    slice, the index of the frame it came from. ``header`` holds the format's own header
    (a nibabel header for NIfTI). ``bits_stored`` is the integer bit depth of the stored
    values (``None`` for floating-point data); ``stored_dtype`` the numpy dtype on disk.
    ``inverted`` is true when a DICOM MONOCHROME1 image was inverted on reading.
    """

    format: str
    path: Path | None = None
    stored_dtype: str = "float32"
    bits_stored: int | None = None
    signed: bool = False
    datasets: tuple[Any, ...] = ()
    frame_order: tuple[int, ...] | None = None
    header: Any = None
    inverted: bool = False


@dataclass(frozen=True, eq=False)
class Image:
    """Pixels (float32, physical units) with spacing, orientation, modality and source header."""

    array: np.ndarray
    spacing: tuple[float, ...]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray | None = None
    modality: str = "OT"
    color: bool = False
    mask: np.ndarray | None = None
    source: Source | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        array = np.asarray(self.array)
        if array.dtype != np.float32:
            array = array.astype(np.float32)
        object.__setattr__(self, "array", array)
        nd = array.ndim - (1 if self.color else 0)
        if self.color and (array.ndim < 3 or array.shape[-1] != 3):
            raise GeometryError(
                f"a colour image needs a trailing axis of 3, got shape {array.shape}"
            )
        if nd not in (2, 3):
            raise GeometryError(
                f"an image has 2 (Y, X) or 3 (Z, Y, X) spatial axes, got shape {array.shape}"
            )
        if any(n == 0 for n in array.shape):
            raise GeometryError(f"an image cannot have an empty axis, got shape {array.shape}")
        spacing = tuple(float(s) for s in self.spacing)
        if len(spacing) != nd:
            raise GeometryError(f"spacing {spacing} does not match {nd} spatial axes")
        if not all(np.isfinite(s) and s > 0 for s in spacing):
            raise GeometryError(f"spacing must be finite and positive, got {spacing}")
        object.__setattr__(self, "spacing", spacing)
        origin = tuple(float(v) for v in self.origin)
        if len(origin) != 3 or not all(np.isfinite(origin)):
            raise GeometryError(f"origin must be 3 finite numbers (LPS mm), got {self.origin}")
        object.__setattr__(self, "origin", origin)
        direction = (
            default_direction(nd)
            if self.direction is None
            else np.asarray(self.direction, dtype=np.float64)
        )
        if direction.shape != (3, nd):
            raise GeometryError(f"direction must have shape (3, {nd}), got {direction.shape}")
        norms = np.linalg.norm(direction, axis=0)
        if not np.allclose(norms, 1.0, atol=1e-3):
            raise GeometryError(f"direction columns must be unit vectors, got norms {norms}")
        direction = direction / norms
        direction.setflags(write=False)
        object.__setattr__(self, "direction", direction)
        if self.mask is not None:
            mask = np.asarray(self.mask).astype(bool)
            if mask.shape != self.spatial_shape:
                raise GeometryError(
                    f"mask shape {mask.shape} does not match image shape {self.spatial_shape}"
                )
            object.__setattr__(self, "mask", mask)

    # -- shape -------------------------------------------------------------------------------
    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape[:-1] if self.color else self.array.shape)

    @property
    def ndim(self) -> int:
        """Number of spatial axes (2 or 3)."""
        return len(self.spatial_shape)

    @property
    def is_volume(self) -> bool:
        return self.ndim == 3

    # -- geometry ----------------------------------------------------------------------------
    @property
    def normal(self) -> np.ndarray:
        """Unit normal of the (Y, X) plane: row direction x column direction (DICOM convention)."""
        n = np.cross(self.direction[:, -1], self.direction[:, -2])
        return n / np.linalg.norm(n)

    def affine(self) -> np.ndarray:
        """4x4 matrix mapping a homogeneous ``(z, y, x, 1)`` (or ``(0, y, x, 1)``) index to LPS mm.

        A 2D image is treated as one slice whose third axis is the plane normal with the
        thickness recorded in ``metadata['slice_thickness']`` (1 mm when unknown).
        """
        spacing, direction = self.spacing_3d(), self.direction_3d()
        out = np.eye(4)
        out[:3, :3] = direction * np.asarray(spacing)[None, :]
        out[:3, 3] = self.origin
        return out

    def spacing_3d(self) -> tuple[float, float, float]:
        if self.is_volume:
            return self.spacing  # type: ignore[return-value]
        thickness = float(self.metadata.get("slice_thickness") or 1.0)
        return (thickness, self.spacing[0], self.spacing[1])

    def direction_3d(self) -> np.ndarray:
        if self.is_volume:
            return self.direction
        return np.column_stack([self.normal, self.direction])

    def orientation_code(self) -> str:
        """Three letters (one per spatial axis, array order) naming where each axis points, LPS."""
        letters = (("L", "R"), ("P", "A"), ("S", "I"))
        codes = []
        for column in self.direction.T:
            k = int(np.argmax(np.abs(column)))
            codes.append(letters[k][0] if column[k] > 0 else letters[k][1])
        return "".join(codes)

    # -- derived images ----------------------------------------------------------------------
    def replace(self, **changes: Any) -> Image:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def regrid(self, array: np.ndarray, *, mask: np.ndarray | None = None) -> Image:
        """The same field of view sampled on the grid of ``array`` (e.g. a super-resolved one).

        The new grid covers exactly the old one (pixel edges aligned): along an axis resampled
        from ``n`` to ``m`` samples the spacing becomes ``spacing * n / m`` and the centre of the
        first sample moves by ``(new_spacing - old_spacing) / 2`` along that axis.
        """
        array = np.asarray(array, dtype=np.float32)
        new_shape = tuple(array.shape[:-1] if self.color else array.shape)
        if len(new_shape) != self.ndim:
            raise GeometryError(
                f"regrid needs {self.ndim} spatial axes like the image, got shape {array.shape}"
            )
        old = np.asarray(self.spatial_shape, dtype=np.float64)
        new = np.asarray(new_shape, dtype=np.float64)
        old_spacing = np.asarray(self.spacing)
        new_spacing = old_spacing * old / new
        shift = self.direction @ ((new_spacing - old_spacing) / 2.0)
        origin = np.asarray(self.origin) + shift
        metadata = dict(self.metadata)
        return dataclasses.replace(
            self,
            array=array,
            spacing=tuple(new_spacing.tolist()),
            origin=tuple(origin.tolist()),
            mask=mask,
            metadata=metadata,
        )

    def describe(self) -> dict[str, Any]:
        """Facts for ``medsr info``: no patient identifiers, only geometry and values
        (``nonfinite``: how many values are NaN or infinite)."""
        mask = np.isfinite(self.array)
        finite = self.array[mask]
        src = self.source
        return {
            "shape": list(self.array.shape),
            "spacing": [round(s, 6) for s in self.spacing],
            "modality": self.modality,
            "dtype": src.stored_dtype if src else "float32",
            "bits_stored": src.bits_stored if src else None,
            "min": float(finite.min()) if finite.size else None,
            "max": float(finite.max()) if finite.size else None,
            "orientation": self.orientation_code(),
            "origin": [round(v, 4) for v in self.origin],
            "color": self.color,
            "format": src.format if src else None,
            "has_mask": self.mask is not None,
            "nonfinite": int(mask.size - finite.size),
        }

    def nonfinite_count(self) -> int:
        """How many values of ``array`` are NaN or infinite (counted one slice at a time)."""
        rows = self.array.reshape(-1, self.array.shape[-1]) if self.array.ndim > 1 else None
        if rows is None:
            return int(np.count_nonzero(~np.isfinite(self.array)))
        step = max(1, 2**22 // max(rows.shape[1], 1))
        return sum(
            int(rows[k : k + step].size - np.count_nonzero(np.isfinite(rows[k : k + step])))
            for k in range(0, rows.shape[0], step)
        )


def default_direction(ndim: int) -> np.ndarray:
    """Axis-aligned direction for images without orientation: X -> L, Y -> P, Z -> S (LPS)."""
    if ndim == 2:
        return np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    return np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
