"""Out-of-distribution warnings: is this input like what the model was trained on? (issue 20)

A trained model's ``config.json`` ``metadata`` says what it saw: ``training_profile``
(``modalities``, ``colour``, ``body_parts``; written by ``scripts/ship_pretrained.py``), else
the modalities of ``normalisation_details.kinds``. :func:`check_input` compares an input
against it and returns :class:`OODWarning` s, each with a short ``code`` (for the DICOM
SeriesDescription and the summaries) and a sentence for a person:

``modality XX``
    a DICOM input whose Modality the model never saw (e.g. US, PT, NM, OT). CR and DR count
    as DX (projection radiography). Non-DICOM inputs carry no modality and are not checked.
``RGB``
    a colour input to a model trained on grey images (each channel is super-resolved as if
    it were a grey image).
``intensity``
    an unusual intensity distribution after normalisation, by two robust statistics of the
    normalised image: more than :data:`OUTSIDE_LIMIT` of the pixels more than
    :data:`OUTSIDE_MARGIN` of the window beyond it (below 0 or above 1: saturated, e.g. a
    fixed CT window that does not fit, or a scaling that does not match the data); or a
    1st-to-99th percentile spread of the foreground below :data:`MIN_SPREAD` of the window
    (almost no contrast, e.g. an 8-bit image stored in 16 bits, or a blank image).
    Pixels at the image's minimum value, when that lies below the window, are a padding
    value (outside a CT's field of view) and do not count as saturated. Training inputs
    (fitted per volume) have at most 1 % of their pixels outside the window, by construction
    of the 0.5/99.5 percentile fit, and a spread of most of it.

Interpolation models have no training data and get no warnings. Body parts are recorded but
not checked (DICOM BodyPartExamined is too often missing or free text).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from medsr.infer.model_source import SRModel
    from medsr.io.image import Image
    from medsr.transforms.intensity import Normaliser

__all__ = [
    "MIN_SPREAD",
    "OUTSIDE_LIMIT",
    "OUTSIDE_MARGIN",
    "OODWarning",
    "TrainingProfile",
    "check_input",
    "flag_dicom",
    "flag_text",
    "training_profile",
]

OUTSIDE_MARGIN = 0.05
"""How far beyond the normalised window [0, 1] a pixel must lie to count as saturated."""
OUTSIDE_LIMIT = 0.05
"""The fraction of saturated pixels above which an input is flagged."""
MIN_SPREAD = 0.05
"""The smallest 1st-99th percentile spread of the normalised foreground not flagged."""

MODALITY_FAMILIES = {"CR": "DX", "DR": "DX", "DX": "DX", "RG": "DX"}
"""Modalities that count as one for the check (projection radiography)."""


@dataclass(frozen=True)
class TrainingProfile:
    """What a model was trained on: DICOM modalities, grey or colour, body parts."""

    modalities: tuple[str, ...] = ()
    colour: bool = False
    body_parts: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "modalities": list(self.modalities),
            "colour": self.colour,
            "body_parts": list(self.body_parts),
        }


@dataclass(frozen=True)
class OODWarning:
    """One reason an input lies outside the training data: ``code`` (short) and ``text``."""

    code: str
    text: str


def training_profile(model: SRModel) -> TrainingProfile | None:
    """The model's :class:`TrainingProfile` from its metadata; None when it records none
    (interpolation, third-party weights)."""
    meta = model.metadata or {}
    profile = meta.get("training_profile")
    if isinstance(profile, Mapping):
        return TrainingProfile(
            modalities=tuple(str(m).upper() for m in profile.get("modalities") or ()),
            colour=bool(profile.get("colour", False)),
            body_parts=tuple(str(b) for b in profile.get("body_parts") or ()),
        )
    details = meta.get("normalisation_details")
    kinds = details.get("kinds") if isinstance(details, Mapping) else None
    if isinstance(kinds, Mapping) and kinds:
        return TrainingProfile(
            modalities=tuple(sorted(str(m).upper() for m in kinds)),
            colour=model.in_channels == 3,
        )
    return None


def _family(modality: str) -> str:
    return MODALITY_FAMILIES.get(modality.upper(), modality.upper())


def check_input(
    image: Image, model: SRModel, normaliser: Normaliser | None = None
) -> list[OODWarning]:
    """The reasons ``image`` lies outside what ``model`` was trained on (empty: none found).

    ``normaliser``: the one fitted for this input (e.g. ``UpscaleResult.normaliser``);
    default: fitted here with the model's policy.
    """
    profile = training_profile(model) if model.trained else None
    if profile is None:
        return []
    warnings: list[OODWarning] = []
    from_dicom = image.source is not None and image.source.format == "dicom"
    seen = {_family(m) for m in profile.modalities}
    if from_dicom and seen and _family(image.modality) not in seen:
        warnings.append(
            OODWarning(
                f"modality {image.modality}",
                f"modality {image.modality} was never seen in training (the model was "
                f"trained on {', '.join(profile.modalities)}): the output may be wrong in "
                "ways the fidelity check does not show",
            )
        )
    if image.color and not profile.colour:
        warnings.append(
            OODWarning(
                "RGB",
                "RGB input to a model trained on grey images: each colour channel is "
                "super-resolved as if it were a grey image",
            )
        )
    normaliser = normaliser or model.normalisation.fit(image)
    norm = np.asarray(normaliser.forward(image.array.astype(np.float32)), dtype=np.float32)
    beyond = (norm < -OUTSIDE_MARGIN) | (norm > 1.0 + OUTSIDE_MARGIN)
    # a padding value (the image minimum, below the window: outside a CT's field of view)
    # is not an intensity the model has to reproduce
    lowest = float(image.array.min())
    if float(normaliser.forward(np.float32(lowest))) < -OUTSIDE_MARGIN:
        beyond &= image.array != lowest
    outside = float(np.mean(beyond, dtype=np.float64))
    from medsr.transforms.intensity import foreground

    grey = norm.mean(axis=-1) if image.color else norm
    fg = grey[foreground(image.array.mean(axis=-1) if image.color else image.array)]
    low, high = np.percentile(fg, [1.0, 99.0])
    spread = float(high - low)
    if outside > OUTSIDE_LIMIT:
        warnings.append(
            OODWarning(
                "intensity",
                f"{100 * outside:.0f}% of the pixels lie outside the model's intensity window "
                f"({_window(normaliser)}) after normalisation (training inputs: at most 1%): "
                "unusual intensities for this model",
            )
        )
    elif spread < MIN_SPREAD:
        warnings.append(
            OODWarning(
                "intensity",
                f"almost no contrast after normalisation: the 1st-99th percentile spread of "
                f"the foreground is {100 * spread:.1f}% of the model's window "
                f"({_window(normaliser)}); training inputs span most of it",
            )
        )
    return warnings


def _window(normaliser: Normaliser) -> str:
    low, high = normaliser.bounds
    return f"{low:.4g}..{high:.4g}"


def flag_text(warnings: list[OODWarning]) -> str:
    """The short flag for descriptions: ``OOD: modality US, RGB`` ("" when none)."""
    return ("OOD: " + ", ".join(w.code for w in warnings)) if warnings else ""


def flag_dicom(files: list[Path], warnings: list[OODWarning]) -> None:
    """Carry the warnings into written DICOM files: the short flag inside the bracket that
    opens the SeriesDescription (``[SR x2, not for primary diagnosis; OOD: modality US] ...``,
    64 characters at most, so it goes before the source's text) and the sentences at the end
    of the DerivationDescription."""
    import pydicom

    if not warnings:
        return
    flag = flag_text(warnings)
    for path in files:
        ds = pydicom.dcmread(path)
        text = str(ds.get("SeriesDescription", "") or "")
        if text.startswith("[") and "]" in text:
            inner, rest = text[1:].split("]", 1)
            text = f"[{inner}; {flag}]{rest}"
        else:
            text = f"[{flag}] {text}".strip()
        ds.SeriesDescription = text[:64]
        derivation = str(ds.get("DerivationDescription", "") or "")
        sentences = "; ".join(w.text for w in warnings)
        ds.DerivationDescription = f"{derivation}; out of distribution: {sentences}"[:1024]
        ds.save_as(path, enforce_file_format=True)
