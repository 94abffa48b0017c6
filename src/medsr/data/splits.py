"""Subject-level train / validation / test splits, seeded and deterministic.

Algorithm (for each stratum, i.e. each dataset, on its own):

1. Every subject gets the key ``sha256(f"{seed}:{subject}")``; subjects are sorted by key.
   The order therefore depends only on the seed and the subject's own name, not on the order
   in which files were found, and adding a subject does not reshuffle the others.
2. Counts come from the fractions by the largest-remainder method: each split gets
   ``floor(fraction * n)`` subjects, and the subjects left over go to the splits with the
   largest remainders (ties in the order train, val, test).
3. Small strata: a split with a positive fraction that got no subject takes one from the
   split holding the most subjects (ties: the first in order train, val, test), as long as
   that split keeps at least one. So 4 subjects at 80/10/10 become 2/1/1 rather than 3/1/0.
   A split that still ends up empty (fewer subjects than requested splits) is reported.
4. The sorted subjects are cut into consecutive runs of those counts: train, val, test.

A subject is one unit: all its volumes and slices land in the same split.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from medsr.errors import ConfigError

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)


@dataclass(frozen=True)
class SplitResult:
    """``assignment`` maps each subject to ``train``/``val``/``test``; ``warnings`` lists the
    strata where a requested split stayed empty."""

    assignment: dict[str, str]
    warnings: tuple[str, ...]


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Three non-negative numbers (train, val, test) summing to 1 with train > 0."""
    if len(fractions) != 3:
        raise ConfigError(f"split fractions are three numbers (train val test), got {fractions}")
    values = tuple(float(f) for f in fractions)
    if any(not math.isfinite(f) or f < 0 for f in values):
        raise ConfigError(f"split fractions must be finite and >= 0, got {values}")
    if abs(sum(values) - 1.0) > 1e-6:
        raise ConfigError(f"split fractions must sum to 1, got {values} (sum {sum(values):g})")
    if values[0] <= 0:
        raise ConfigError(f"the train fraction must be positive, got {values}")
    return values  # type: ignore[return-value]


def subject_order(subjects: Sequence[str], seed: int) -> list[str]:
    """Subjects sorted by ``sha256(f"{seed}:{subject}")``: a seeded, input-order-free shuffle."""

    def key(subject: str) -> str:
        return hashlib.sha256(f"{int(seed)}:{subject}".encode()).hexdigest()

    return sorted(set(subjects), key=key)


def split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """How many of ``n`` subjects go to each split (steps 2 and 3 of the module docstring)."""
    fractions = check_fractions(fractions)
    ideal = [f * n for f in fractions]
    counts = [math.floor(x) for x in ideal]
    left = n - sum(counts)
    by_remainder = sorted(range(3), key=lambda i: (-(ideal[i] - counts[i]), i))
    for i in by_remainder[:left]:
        counts[i] += 1
    for i in range(3):
        if fractions[i] > 0 and counts[i] == 0:
            donor = max(range(3), key=lambda j: (counts[j], -j))
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[i] += 1
    return counts


def assign_splits(
    subjects: Mapping[str, str],
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> SplitResult:
    """Split subjects into train/val/test, separately within each stratum.

    ``subjects`` maps a subject to its stratum (e.g. its dataset), so every dataset is split
    with the same fractions. Deterministic given the subjects, strata, fractions and seed.
    """
    fractions = check_fractions(fractions)
    strata: dict[str, list[str]] = {}
    for subject, stratum in subjects.items():
        strata.setdefault(stratum, []).append(subject)
    assignment: dict[str, str] = {}
    warnings: list[str] = []
    for stratum in sorted(strata):
        ordered = subject_order(strata[stratum], seed)
        counts = split_counts(len(ordered), fractions)
        start = 0
        for name, count in zip(SPLITS, counts, strict=True):
            for subject in ordered[start : start + count]:
                assignment[subject] = name
            start += count
        empty = [
            name
            for name, count, f in zip(SPLITS, counts, fractions, strict=True)
            if f > 0 and count == 0
        ]
        if empty:
            message = (
                f"{stratum}: only {len(ordered)} subject(s), so the {' and '.join(empty)} "
                f"split{'s are' if len(empty) > 1 else ' is'} empty"
            )
            logger.warning(message)
            warnings.append(message)
    return SplitResult(assignment=assignment, warnings=tuple(warnings))


__all__ = [
    "DEFAULT_FRACTIONS",
    "SPLITS",
    "SplitResult",
    "assign_splits",
    "check_fractions",
    "split_counts",
    "subject_order",
]
