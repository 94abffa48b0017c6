"""Reader-study design: items, blinding, each reader's order, answers and their validation.

A study is *cases x methods x readers*. In ``"rating"`` mode every (case, method) image is
one item, rated on two 1-5 Likert scales (image quality, diagnostic usefulness) as in the
chest X-ray study. In ``"pairwise"`` mode an item is two methods of the same case side by
side and the reader picks left, right or no preference.

Blinding: readers only ever see opaque ids (``secrets.token_hex``) for items and images;
method and case names stay in the store and the investigator's report.

Order (documented so that anyone can re-derive it from the study seed without medsr):
each reader sees every item once, sorted by the key

    SHA-256( JSON ["medsr-study-order-v1", seed, reader_index, case, [method, ...]] )

(UTF-8, ``json.dumps`` with default separators, reader_index 0-based, the methods of a
pair sorted by code point). In pairwise mode the method sorted first is shown on the right
instead of the left when the lowest bit of the last byte of

    SHA-256( JSON ["medsr-study-side-v1", seed, reader_index, case, [method_a, method_b]] )

is 1. A cryptographic hash acts as a random permutation that is independent per reader,
identical on every platform and Python/NumPy version, and stable when items are added
(no generator state is shared between items). Two readers therefore see different
orders, and the same seed always gives the same orders.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import numbers
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

from medsr.errors import ConfigError, InvalidAnswerError

MODES: tuple[str, ...] = ("rating", "pairwise")
SCALES: dict[str, str] = {
    "quality": "Image quality",
    "usefulness": "Diagnostic usefulness",
}
LIKERT_MIN = 1
LIKERT_MAX = 5
LIKERT_ANCHORS: dict[int, str] = {
    1: "very poor (non-diagnostic)",
    2: "poor",
    3: "fair",
    4: "good",
    5: "excellent",
}
FLAGS: dict[str, str] = {
    "artefact": "Artefact (ringing, checkerboard, streaks)",
    "hallucinated_structure": "Hallucinated structure (detail that should not be there)",
    "blur": "Blurred or lost detail",
    "noise": "Noise",
}
CHOICES: dict[str, str] = {
    "left": "Left image is better",
    "right": "Right image is better",
    "none": "No preference",
}
MAX_COMMENT_CHARS = 2000
ORDER_KEY_VERSION = "medsr-study-order-v1"
SIDE_KEY_VERSION = "medsr-study-side-v1"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
_OPAQUE_ID = re.compile(r"[0-9a-f]{16}")


def check_name(kind: str, name: object) -> str:
    """Validate a case, method or reader label: 1-64 of ``A-Z a-z 0-9 _ . + -``, no leading
    punctuation (names end up in file-free places only, but reports and CSVs stay clean)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"invalid {kind} name {name!r}: use 1-64 characters from A-Z a-z 0-9 _ . + - "
            "starting with a letter or digit"
        )
    return name


def check_mode(mode: object) -> str:
    if mode not in MODES:
        raise ConfigError(f"unknown study mode {mode!r}; choose one of {', '.join(MODES)}")
    return str(mode)


def new_opaque_id() -> str:
    """A random 16-hex-digit id for an item or image: unguessable and carrying no order."""
    return secrets.token_hex(8)


def is_opaque_id(value: object) -> bool:
    return isinstance(value, str) and _OPAQUE_ID.fullmatch(value) is not None


def new_token() -> str:
    """A reader's personal token (128 random bits, URL-safe). Shown once, stored hashed."""
    return secrets.token_urlsafe(16)


def hash_token(token: str) -> str:
    """SHA-256 of a token (hex). Tokens are random, so no salt or slow hash is needed."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(token: str, token_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token), token_hash)


# ----------------------------------------------------------------------------- answers


def _likert(scale: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidAnswerError(
            f"{scale} score must be a whole number from {LIKERT_MIN} to {LIKERT_MAX}, got {value!r}"
        )
    score = int(value)
    if not LIKERT_MIN <= score <= LIKERT_MAX:
        raise InvalidAnswerError(
            f"{scale} score must be from {LIKERT_MIN} to {LIKERT_MAX}, got {score}"
        )
    return score


def _comment(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidAnswerError(f"comment must be text, got {type(value).__name__}")
    text = value.strip()
    if len(text) > MAX_COMMENT_CHARS:
        raise InvalidAnswerError(
            f"comment is {len(text)} characters long; at most {MAX_COMMENT_CHARS} are kept"
        )
    if "\x00" in text:
        raise InvalidAnswerError("comment contains a NUL character")
    return text


def _flags(values: object) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise InvalidAnswerError(f"flags must be a list of names, got {values!r}")
    flags = set()
    for value in values:
        if value not in FLAGS:
            raise InvalidAnswerError(f"unknown flag {value!r}; allowed flags: {', '.join(FLAGS)}")
        flags.add(value)
    return tuple(sorted(flags))


@dataclass(frozen=True)
class Rating:
    """One reader's answer to one image in ``"rating"`` mode.

    ``quality`` and ``usefulness`` are 1-5 Likert scores (see ``LIKERT_ANCHORS``); ``flags``
    are names from ``FLAGS`` (stored sorted, duplicates dropped); ``comment`` is free text
    (stripped, at most ``MAX_COMMENT_CHARS``). Invalid values raise ``InvalidAnswerError``.
    """

    quality: int
    usefulness: int
    comment: str = ""
    flags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "quality", _likert("quality", self.quality))
        object.__setattr__(self, "usefulness", _likert("usefulness", self.usefulness))
        object.__setattr__(self, "comment", _comment(self.comment))
        object.__setattr__(self, "flags", _flags(self.flags))


@dataclass(frozen=True)
class Preference:
    """One reader's answer to one pair in ``"pairwise"`` mode: ``choice`` is one of
    ``"left"``, ``"right"``, ``"none"`` (as the reader saw the pair), plus a free-text
    comment."""

    choice: str
    comment: str = ""

    def __post_init__(self) -> None:
        if self.choice not in CHOICES:
            raise InvalidAnswerError(
                f"unknown choice {self.choice!r}; choose one of {', '.join(CHOICES)}"
            )
        object.__setattr__(self, "comment", _comment(self.comment))


Answer = Rating | Preference


# ------------------------------------------------------------------------ reader views


@dataclass(frozen=True)
class Reader:
    """A reader as identified by a token: ``index`` (0-based, seeds the order) and
    ``label`` (e.g. ``"reader-1"``; the only identifier the study stores)."""

    index: int
    label: str


@dataclass(frozen=True)
class ReaderItem:
    """What a reader sees of one item: nothing but opaque ids (blinded).

    ``images`` holds one image id in rating mode and ``(left, right)`` in pairwise mode;
    ``position`` is 1-based in this reader's order, out of ``total``.
    """

    item_id: str
    position: int
    total: int
    images: tuple[str, ...]
    answered: bool


@dataclass(frozen=True)
class Progress:
    answered: int
    total: int

    @property
    def done(self) -> bool:
        return self.answered >= self.total


@dataclass(frozen=True)
class ReaderProgress:
    """One row of ``Study.reader_progress()`` (for the investigator)."""

    index: int
    label: str
    answered: int
    total: int
    first_answer_at: str | None
    last_answer_at: str | None


@dataclass(frozen=True)
class Saved:
    """Receipt of a stored answer: ``revision`` is 1 for a first answer and counts up each
    time the reader changes it."""

    item_id: str
    revision: int


# ------------------------------------------------------------------ unblinded records


@dataclass(frozen=True)
class RatingRecord:
    """A stored rating with its case and method (for analysis, never shown to readers)."""

    reader: str
    case: str
    method: str
    quality: int
    usefulness: int
    flags: tuple[str, ...] = ()
    comment: str = ""
    answered_at: str = ""
    revision: int = 1
    elapsed_s: float | None = None

    def score(self, scale: str) -> int:
        if scale not in SCALES:
            raise ConfigError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
        return self.quality if scale == "quality" else self.usefulness


@dataclass(frozen=True)
class PreferenceRecord:
    """A stored pairwise answer resolved to methods: ``left``/``right`` as this reader saw
    them, ``choice`` as given, ``preferred`` the chosen method or ``None`` for no preference."""

    reader: str
    case: str
    left: str
    right: str
    choice: str
    comment: str = ""
    answered_at: str = ""
    revision: int = 1
    elapsed_s: float | None = None

    @property
    def preferred(self) -> str | None:
        return {"left": self.left, "right": self.right}.get(self.choice)


# ------------------------------------------------------------------------ design


@dataclass(frozen=True)
class ItemSpec:
    """An item before blinding: a case and one method (rating) or two (pairwise, sorted)."""

    case: str
    methods: tuple[str, ...]


def design_items(
    methods_by_case: Mapping[str, Sequence[str]],
    *,
    mode: str,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> list[ItemSpec]:
    """The items of a study in canonical order (sorted by case, then method names).

    Every case must have the same methods (a balanced design, needed for per-case
    comparisons and the agreement statistics). ``pairs`` (pairwise mode only) limits the
    compared pairs, e.g. ``[("hr", "edsr"), ("bicubic", "edsr")]``; by default every
    unordered pair of methods is compared.
    """
    check_mode(mode)
    if not methods_by_case:
        raise ConfigError("a study needs at least one case")
    reference: tuple[str, ...] | None = None
    first = ""
    for case, methods in methods_by_case.items():
        check_name("case", case)
        names = tuple(sorted(check_name("method", m) for m in methods))
        if len(set(names)) != len(names):
            raise ConfigError(f"case {case!r} lists a method twice: {list(methods)}")
        if reference is None:
            reference = names
            first = case
        elif names != reference:
            missing = sorted(set(reference) - set(names))
            extra = sorted(set(names) - set(reference))
            raise ConfigError(
                f"case {case!r} has different methods than case {first!r} "
                f"(missing {missing}, extra {extra}); every case needs the same methods"
            )
    assert reference is not None
    if mode == "rating":
        if pairs is not None:
            raise ConfigError("pairs only apply to mode='pairwise'")
        if not reference:
            raise ConfigError("a study needs at least one method")
        return [ItemSpec(case, (m,)) for case in sorted(methods_by_case) for m in reference]
    if len(reference) < 2:
        raise ConfigError(f"pairwise mode needs at least two methods, got {list(reference)}")
    if pairs is None:
        chosen = list(combinations(reference, 2))
    else:
        chosen = []
        for pair in pairs:
            if len(pair) != 2 or pair[0] == pair[1]:
                raise ConfigError(f"a pair needs two different methods, got {pair!r}")
            for method in pair:
                if method not in reference:
                    raise ConfigError(
                        f"pair {pair!r} names unknown method {method!r}; "
                        f"methods: {', '.join(reference)}"
                    )
            canonical = (min(pair), max(pair))
            if canonical in chosen:
                raise ConfigError(f"pair {pair!r} is listed twice")
            chosen.append(canonical)
        if not chosen:
            raise ConfigError("pairs is empty; leave it out to compare every pair")
    return [ItemSpec(case, pair) for case in sorted(methods_by_case) for pair in sorted(chosen)]


def _digest(*parts: object) -> bytes:
    return hashlib.sha256(json.dumps(list(parts)).encode("utf-8")).digest()


def order_key(item: ItemSpec, *, seed: int, reader_index: int) -> bytes:
    """Sort key of ``item`` in reader ``reader_index``'s order (see the module docstring)."""
    return _digest(ORDER_KEY_VERSION, seed, reader_index, item.case, list(item.methods))


def reader_order(items: Sequence[ItemSpec], *, seed: int, reader_index: int) -> list[ItemSpec]:
    """``items`` in the order reader ``reader_index`` (0-based) sees them."""
    check_seed(seed)
    return sorted(items, key=lambda item: order_key(item, seed=seed, reader_index=reader_index))


def swap_sides(item: ItemSpec, *, seed: int, reader_index: int) -> bool:
    """Whether this reader sees the pair's second (alphabetical) method on the left."""
    digest = _digest(SIDE_KEY_VERSION, seed, reader_index, item.case, list(item.methods))
    return bool(digest[-1] & 1)


def check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)
