from __future__ import annotations

import math

import numpy as np
import pytest

from medsr.eval.stats import describe, paired_wilcoxon


def test_describe_uses_the_sample_std_and_leaves_out_non_finite_values() -> None:
    d = describe([1.0, 2.0, 3.0, 4.0, math.inf, math.nan])
    assert d.mean == pytest.approx(2.5)
    assert d.std == pytest.approx(math.sqrt(5 / 3))  # ddof=1
    assert (d.n, d.non_finite) == (4, 2)


def test_describe_of_one_value_has_no_std_and_of_none_no_mean() -> None:
    one = describe([7.0])
    assert one.mean == 7.0 and math.isnan(one.std) and one.n == 1
    none = describe([])
    assert math.isnan(none.mean) and none.n == 0


def test_wilcoxon_exact_p_when_every_difference_has_the_same_sign() -> None:
    # 8 positive differences with distinct ranks: the exact two-sided p is 2 / 2**8
    x = np.array([11.0, 12.5, 13.0, 14.5, 15.0, 16.5, 17.0, 18.5])
    y = x - np.arange(1, 9)
    result = paired_wilcoxon(x, y)
    assert result.p_value == pytest.approx(2 / 2**8)
    assert (result.n, result.n_nonzero) == (8, 8)
    assert result.median_difference == pytest.approx(4.5)
    assert result.statistic == 0.0  # the smaller rank sum (scipy's two-sided statistic)


def test_wilcoxon_known_mixed_signs() -> None:
    # differences 1, -2, 3, 4, 5, 6 (ranks 1..6): W- = 2, exact two-sided p = 2 * 3 / 64
    y = np.zeros(6)
    x = np.array([1.0, -2.0, 3.0, 4.0, 5.0, 6.0])
    result = paired_wilcoxon(x, y)
    assert result.statistic == 2.0
    assert result.p_value == pytest.approx(6 / 64)


def test_wilcoxon_no_difference_and_non_finite_pairs() -> None:
    same = paired_wilcoxon([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert same.p_value == 1.0 and same.n_nonzero == 0
    dropped = paired_wilcoxon([1.0, math.inf, 3.0, math.nan], [0.0, 1.0, 2.0, 2.0])
    assert dropped.n == 2
    empty = paired_wilcoxon([math.nan], [1.0])
    assert empty.n == 0 and math.isnan(empty.p_value)
    with pytest.raises(ValueError, match="same length"):
        paired_wilcoxon([1.0, 2.0], [1.0])
