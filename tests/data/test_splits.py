from __future__ import annotations

import logging
import random

import pytest

from medsr.data.splits import assign_splits, split_counts, subject_order
from medsr.errors import ConfigError


def test_counts_follow_the_fractions_by_largest_remainder() -> None:
    assert split_counts(10, (0.8, 0.1, 0.1)) == [8, 1, 1]
    assert split_counts(32, (0.8, 0.1, 0.1)) == [26, 3, 3]
    assert split_counts(7, (0.5, 0.25, 0.25)) == [3, 2, 2]  # remainders .5, .75, .75
    assert split_counts(5, (1.0, 0.0, 0.0)) == [5, 0, 0]
    assert sum(split_counts(101, (0.7, 0.2, 0.1))) == 101


def test_small_strata_still_get_validation_and_test_subjects() -> None:
    assert split_counts(4, (0.8, 0.1, 0.1)) == [2, 1, 1]  # BraTS: 4 patients
    assert split_counts(3, (0.8, 0.1, 0.1)) == [1, 1, 1]
    assert split_counts(2, (0.8, 0.1, 0.1)) == [1, 1, 0]
    assert split_counts(1, (0.8, 0.1, 0.1)) == [1, 0, 0]
    assert split_counts(4, (0.8, 0.2, 0.0)) == [3, 1, 0]  # no test requested: none made


def test_empty_split_is_warned_about(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="medsr.data.splits"):
        result = assign_splits({"a": "xray", "b": "xray"}, seed=0)
    assert sorted(result.assignment.values()) == ["train", "val"]
    assert len(result.warnings) == 1 and "test split is empty" in result.warnings[0]
    assert "xray" in caplog.text


def test_deterministic_seeded_and_independent_of_input_order() -> None:
    subjects = [f"sub{k:02d}" for k in range(40)]
    shuffled = subjects[:]
    random.Random(1).shuffle(shuffled)
    a = assign_splits(dict.fromkeys(subjects, "d"), seed=7).assignment
    b = assign_splits(dict.fromkeys(shuffled, "d"), seed=7).assignment
    assert a == b
    c = assign_splits(dict.fromkeys(subjects, "d"), seed=8).assignment
    assert a != c
    assert sorted(a.values()).count("val") == 4 and sorted(a.values()).count("test") == 4
    # adding a subject keeps the order of the others (only the cut points can move)
    order = subject_order(subjects, 7)
    assert [s for s in subject_order([*subjects, "new"], 7) if s != "new"] == order


def test_each_dataset_is_split_on_its_own() -> None:
    subjects = {f"spine{k}": "spine" for k in range(10)} | {f"pat{k}": "brats" for k in range(4)}
    result = assign_splits(subjects, fractions=(0.8, 0.1, 0.1), seed=0).assignment
    spine = [result[s] for s in subjects if s.startswith("spine")]
    brats = [result[s] for s in subjects if s.startswith("pat")]
    assert (spine.count("train"), spine.count("val"), spine.count("test")) == (8, 1, 1)
    assert (brats.count("train"), brats.count("val"), brats.count("test")) == (2, 1, 1)


@pytest.mark.parametrize(
    ("fractions", "message"),
    [
        ((0.8, 0.1), "three numbers"),
        ((0.8, 0.3, 0.1), "sum to 1"),
        ((0.0, 0.5, 0.5), "train"),
        ((1.2, -0.1, -0.1), ">= 0"),
    ],
)
def test_bad_fractions_are_refused(fractions, message) -> None:
    with pytest.raises(ConfigError, match=message):
        assign_splits({"a": "d"}, fractions=fractions)
