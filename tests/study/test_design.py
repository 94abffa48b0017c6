"""Answers and their validation, the item design, and the documented per-reader order."""

from __future__ import annotations

import hashlib
import json

import pytest

from medsr.errors import ConfigError, InvalidAnswerError
from medsr.study.design import (
    FLAGS,
    ItemSpec,
    Preference,
    PreferenceRecord,
    Rating,
    design_items,
    hash_token,
    new_token,
    reader_order,
    swap_sides,
    token_matches,
)


@pytest.mark.parametrize("bad", [0, 6, -1, 3.5, True, "4", None])
def test_rating_rejects_scores_outside_the_likert_scale(bad: object) -> None:
    with pytest.raises(InvalidAnswerError, match="quality"):
        Rating(quality=bad, usefulness=3)  # type: ignore[arg-type]
    with pytest.raises(InvalidAnswerError, match="usefulness"):
        Rating(quality=3, usefulness=bad)  # type: ignore[arg-type]


def test_rating_normalises_flags_and_comment() -> None:
    rating = Rating(4, 2, comment="  ringing at the edge \n", flags=["noise", "artefact", "noise"])
    assert rating.flags == ("artefact", "noise")
    assert rating.comment == "ringing at the edge"
    with pytest.raises(InvalidAnswerError, match=r"unknown flag 'weird'.*artefact"):
        Rating(4, 2, flags=["weird"])
    with pytest.raises(InvalidAnswerError, match="flags must be a list"):
        Rating(4, 2, flags="artefact")  # type: ignore[arg-type]
    with pytest.raises(InvalidAnswerError, match="at most"):
        Rating(4, 2, comment="x" * 2001)
    assert set(FLAGS) >= {"artefact", "hallucinated_structure"}


def test_preference_choices() -> None:
    assert Preference("left").choice == "left"
    with pytest.raises(InvalidAnswerError, match="left, right, none"):
        Preference("both")
    record = PreferenceRecord("r", "c", left="edsr", right="hr", choice="right")
    assert record.preferred == "hr"
    assert PreferenceRecord("r", "c", "edsr", "hr", "none").preferred is None


def test_design_items_rating_and_pairwise() -> None:
    methods = {"b": ["hr", "edsr", "bicubic"], "a": ["bicubic", "hr", "edsr"]}
    rating = design_items(methods, mode="rating")
    assert rating[:3] == [
        ItemSpec("a", ("bicubic",)),
        ItemSpec("a", ("edsr",)),
        ItemSpec("a", ("hr",)),
    ]
    assert len(rating) == 6
    pairwise = design_items(methods, mode="pairwise")
    assert len(pairwise) == 2 * 3
    assert ItemSpec("a", ("edsr", "hr")) in pairwise
    chosen = design_items(methods, mode="pairwise", pairs=[("hr", "edsr"), ("hr", "bicubic")])
    assert [item.methods for item in chosen[:2]] == [("bicubic", "hr"), ("edsr", "hr")]


@pytest.mark.parametrize(
    ("methods", "options", "message"),
    [
        ({"a": ["hr", "edsr"], "b": ["hr"]}, {"mode": "rating"}, "missing \\['edsr'\\]"),
        ({"a": ["hr", "hr"]}, {"mode": "rating"}, "twice"),
        ({"a": ["hr"]}, {"mode": "pairwise"}, "at least two methods"),
        ({"a": ["hr", "x"]}, {"mode": "pairwise", "pairs": [("hr", "y")]}, "unknown method 'y'"),
        ({"a": ["hr", "x"]}, {"mode": "pairwise", "pairs": [("hr", "hr")]}, "two different"),
        ({"a": ["hr", "x"]}, {"mode": "rating", "pairs": [("hr", "x")]}, "pairwise"),
        ({"a": ["hr"]}, {"mode": "ranking"}, "rating, pairwise"),
        ({"a b": ["hr"]}, {"mode": "rating"}, "invalid case name"),
        ({"a": ["../hr"]}, {"mode": "rating"}, "invalid method name"),
        ({}, {"mode": "rating"}, "at least one case"),
    ],
)
def test_design_items_errors(methods: dict, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        design_items(methods, **options)


def _items() -> list[ItemSpec]:
    return design_items(
        {f"case-{c}": ["hr", "bicubic", "edsr", "srgan"] for c in range(5)}, mode="rating"
    )


def test_reader_orders_differ_between_readers_and_are_reproducible() -> None:
    items = _items()
    orders = [reader_order(items, seed=3, reader_index=r) for r in range(4)]
    for order in orders:
        assert sorted(order, key=items.index) == items  # a permutation of all items
    assert len({tuple(order) for order in orders}) == 4
    assert orders[0] != items  # shuffled, not the canonical order
    again = [reader_order(list(reversed(items)), seed=3, reader_index=r) for r in range(4)]
    assert again == orders  # depends on the seed only, not on the input order
    assert reader_order(items, seed=4, reader_index=0) != orders[0]


def test_order_follows_the_documented_hash_algorithm() -> None:
    """Re-derive reader 2's order from the module docstring, with hashlib only."""
    items = _items()

    def key(item: ItemSpec) -> bytes:
        text = json.dumps(["medsr-study-order-v1", 11, 2, item.case, list(item.methods)])
        return hashlib.sha256(text.encode("utf-8")).digest()

    assert reader_order(items, seed=11, reader_index=2) == sorted(items, key=key)
    pair = ItemSpec("case-1", ("edsr", "hr"))
    side = json.dumps(["medsr-study-side-v1", 11, 2, "case-1", ["edsr", "hr"]])
    expected = bool(hashlib.sha256(side.encode("utf-8")).digest()[-1] & 1)
    assert swap_sides(pair, seed=11, reader_index=2) is expected


def test_sides_are_mixed_within_and_across_readers() -> None:
    pairs = design_items({f"c{i}": ["a", "b", "c"] for i in range(10)}, mode="pairwise")
    swaps = [[swap_sides(p, seed=1, reader_index=r) for p in pairs] for r in range(3)]
    for row in swaps:
        assert 5 <= sum(row) <= 25  # 30 pairs: both sides used (binomial, p < 1e-3 to fail)
    assert swaps[0] != swaps[1]


def test_seed_must_be_a_non_negative_integer() -> None:
    with pytest.raises(ConfigError, match="seed"):
        reader_order(_items(), seed=-1, reader_index=0)


def test_tokens_are_random_and_stored_hashed() -> None:
    tokens = {new_token() for _ in range(20)}
    assert len(tokens) == 20
    token = tokens.pop()
    assert len(token) >= 20
    assert token not in hash_token(token)
    assert token_matches(token, hash_token(token))
    assert not token_matches(token + "x", hash_token(token))
