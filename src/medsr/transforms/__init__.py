"""Pure, deterministic image transforms with explicit randomness.

* ``medsr.transforms.intensity``: invertible per-modality normalisation to [0, 1] and back.
* ``medsr.transforms.degrade``: HR -> LR degradations (resampling, k-space truncation, thick
  slices, noise, JPEG, the Real-ESRGAN second-order pipeline), composable from YAML.

Nothing is imported here, so ``import medsr.transforms`` stays cheap.
"""

from __future__ import annotations
