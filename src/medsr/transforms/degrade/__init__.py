"""HR -> LR degradations: pure functions with explicit randomness, composable from YAML.

Conventions (every function and stage here follows them):

* **Shapes.** Images are float tensors ``(B, C, H, W)``; ``(H, W)`` and ``(C, H, W)`` are
  accepted too and the output keeps the input's number of dimensions. A 3D volume
  ``(Z, Y, X)`` is degraded with :func:`along_axis` (resample one axis, e.g. through-plane)
  or :func:`slicewise` (degrade every 2D slice normal to an axis).
* **Scale.** ``scale`` is an integer (both in-plane axes) or a pair ``(s_h, s_w)`` where 1
  leaves that axis alone. The LR size is *exactly* the HR size divided by the scale; an HR
  size that is not divisible raises :class:`~medsr.errors.ConfigError` naming the shape
  (nothing is cropped silently). Crop first with :func:`crop_to_multiple`, which keeps the
  first rows/columns so the image origin (and any DICOM geometry) does not move.
* **Grid.** Every resampling keeps pixel *centres* aligned the way MATLAB ``imresize``,
  PIL and ``F.interpolate(align_corners=False)`` do: LR pixel ``i`` sits at HR coordinate
  ``(i + 0.5) * s - 0.5``. All degradations therefore produce LR images on the same grid,
  and a model trained on one is evaluated on the grid of another without a shift.
* **Values.** Inputs are normalised to [0, 1] (see ``medsr.transforms.intensity``). Steps
  that can overshoot (bicubic's negative lobes, Gibbs ringing of k-space truncation, noise)
  clip to [0, 1] unless told ``clip=False``; convex ones (bilinear, Gaussian blur, thick
  slices) cannot leave the input's range and are not clipped.
* **Randomness.** Random steps take ``generator=`` (a ``torch.Generator`` or an ``int``
  seed); nothing reads the global RNG, so the same seed gives the same LR image.

The YAML form is a list of stages, e.g.::

    - {name: gaussian_blur, scale: 4, sigma: 1.7}
    - {name: rician_noise, snr: 20}

built by :func:`build_degradation` from the :data:`DEGRADATIONS` name table into a
:class:`Degradation` (``deg(hr, generator=seed) -> lr``, ``deg.scale``,
``deg.downsample_only()`` for the noise-free consistency check).

The package is split by family, each module holding its functions and their stages:
``base`` (conventions, :class:`Stage`), ``resample`` (bicubic, bilinear, Gaussian blur,
k-space, mixed), ``slices`` (thick slices, volumes), ``noise``, ``jpeg``, ``realesrgan``
and ``pipeline`` (the name table, :class:`Degradation`, the builders). Import the public
names from here; the module paths are an implementation detail.
"""

from __future__ import annotations

from medsr.transforms.degrade.base import (
    FWHM_PER_SIGMA,
    Range,
    Scale,
    Seed,
    Stage,
    as_generator,
    crop_to_multiple,
)
from medsr.transforms.degrade.jpeg import JPEGCompression, jpeg
from medsr.transforms.degrade.noise import (
    GaussianNoise,
    PoissonNoise,
    RicianNoise,
    RicianReference,
    gaussian_noise,
    noise_reference,
    poisson_noise,
    rician_noise,
)
from medsr.transforms.degrade.pipeline import (
    DEGRADATIONS,
    Degradation,
    build_degradation,
    build_stage,
    load_degradation,
)
from medsr.transforms.degrade.realesrgan import (
    KERNEL_TYPES,
    RealESRGAN,
    random_blur_kernel,
    realesrgan,
    sinc_kernel,
)
from medsr.transforms.degrade.resample import (
    MIXED_KIND_TEXT,
    MIXED_KINDS,
    Bicubic,
    Bilinear,
    GaussianBlur,
    KSpaceTruncation,
    KSpaceWindow,
    MixedDownsample,
    bicubic,
    bilinear,
    blur_downsample,
    default_blur_sigma,
    gaussian_blur,
    kspace_truncate,
    kspace_window,
    mixed_kind,
)
from medsr.transforms.degrade.slices import (
    SliceProfile,
    ThickSlice,
    along_axis,
    slice_profile_weights,
    slicewise,
    thick_slices,
)

__all__ = [
    "DEGRADATIONS",
    "FWHM_PER_SIGMA",
    "KERNEL_TYPES",
    "MIXED_KINDS",
    "MIXED_KIND_TEXT",
    "Bicubic",
    "Bilinear",
    "Degradation",
    "GaussianBlur",
    "GaussianNoise",
    "JPEGCompression",
    "KSpaceTruncation",
    "KSpaceWindow",
    "MixedDownsample",
    "PoissonNoise",
    "Range",
    "RealESRGAN",
    "RicianNoise",
    "RicianReference",
    "Scale",
    "Seed",
    "SliceProfile",
    "Stage",
    "ThickSlice",
    "along_axis",
    "as_generator",
    "bicubic",
    "bilinear",
    "blur_downsample",
    "build_degradation",
    "build_stage",
    "crop_to_multiple",
    "default_blur_sigma",
    "gaussian_blur",
    "gaussian_noise",
    "jpeg",
    "kspace_truncate",
    "kspace_window",
    "load_degradation",
    "mixed_kind",
    "noise_reference",
    "poisson_noise",
    "random_blur_kernel",
    "realesrgan",
    "rician_noise",
    "sinc_kernel",
    "slice_profile_weights",
    "slicewise",
    "thick_slices",
]
