"""Study statistics against published worked examples and hand-computed data."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from scipy import stats

from medsr.errors import ConfigError
from medsr.study.analysis import (
    analyse_preferences,
    analyse_ratings,
    holm,
    icc2,
    kendall_w,
    mean_ci,
    sign_test,
    wilson_interval,
)
from medsr.study.design import PreferenceRecord, RatingRecord

# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges.
SHROUT_FLEISS = [
    [9, 2, 5, 8],
    [6, 1, 3, 2],
    [8, 4, 6, 8],
    [7, 1, 2, 6],
    [10, 5, 6, 9],
    [6, 2, 4, 7],
]
# McGraw & Wong (1996), Table 6 data: 10 targets, 2 raters.
MCGRAW_WONG = [
    [103, 119],
    [82, 65],
    [116, 106],
    [102, 102],
    [99, 105],
    [98, 100],
    [104, 107],
    [62, 85],
    [97, 101],
    [107, 110],
]


def test_icc_matches_shrout_fleiss_1979() -> None:
    result = icc2(SHROUT_FLEISS)
    # Published (Table 3 and the ANOVA of Table 2): BMS 11.24, JMS 32.49, EMS 1.02,
    # ICC(2,1) = .29, ICC(2,4) = .62.
    assert result.ms_targets == pytest.approx(11.24, abs=0.005)
    assert result.ms_raters == pytest.approx(32.49, abs=0.005)
    assert result.ms_error == pytest.approx(1.02, abs=0.005)
    assert result.icc_single == pytest.approx(0.29, abs=0.005)
    assert result.icc_average == pytest.approx(0.62, abs=0.005)
    assert (result.n_targets, result.k_raters, result.df1, result.df2) == (6, 4, 5, 15)


def test_icc_intervals_match_published_values() -> None:
    # R psych::ICC on the McGraw & Wong data: ICC2 0.720 [0.228, 0.922],
    # ICC2k 0.837 [0.371, 0.959], F = 6.00 on (9, 9), p = 0.00677.
    result = icc2(MCGRAW_WONG)
    assert result.icc_single == pytest.approx(0.720, abs=0.0005)
    assert (result.single_low, result.single_high) == pytest.approx((0.228, 0.922), abs=0.0005)
    assert result.icc_average == pytest.approx(0.837, abs=0.0005)
    assert (result.average_low, result.average_high) == pytest.approx((0.371, 0.959), abs=0.0005)
    assert result.f_value == pytest.approx(6.00, abs=0.005)
    assert result.p_value == pytest.approx(0.00677, abs=0.000005)
    # psych::ICC on the Shrout & Fleiss data: ICC2 CI [0.02, 0.76], ICC2k CI [0.07, 0.93].
    sf = icc2(SHROUT_FLEISS)
    assert (sf.single_low, sf.single_high) == pytest.approx((0.02, 0.76), abs=0.005)
    assert (sf.average_low, sf.average_high) == pytest.approx((0.07, 0.93), abs=0.005)


def test_icc_edge_cases() -> None:
    perfect = icc2([[1, 1], [3, 3], [5, 5]])
    assert perfect.icc_single == 1.0 and perfect.icc_average == 1.0
    with pytest.raises(ConfigError, match="at least 2 targets x 2 raters"):
        icc2([[1, 2, 3]])
    with pytest.raises(ConfigError, match="complete"):
        icc2([[1, 2], [3, np.nan]])


def test_kendall_w_matches_siegel_example() -> None:
    # Siegel (1956), Nonparametric Statistics, p. 234: 3 executives rank 6 applicants,
    # rank sums 8, 14, 11, 11, 11, 8; s = 25.5; W = 0.16.
    ranks = np.array([[1, 6, 3, 2, 5, 4], [1, 5, 6, 4, 2, 3], [6, 3, 2, 5, 4, 1]]).T
    result = kendall_w(ranks)
    assert result.w == pytest.approx(12 * 25.5 / (3**2 * (6**3 - 6)))
    assert round(result.w, 2) == 0.16
    assert result.chi2 == pytest.approx(3 * 5 * result.w)
    assert result.df == 5


def test_kendall_w_tie_correction_by_hand() -> None:
    """3 raters score 4 objects with ties.

    ranks: r1 [4, 2.5, 2.5, 1] (T = 2^3 - 2 = 6), r2 [3.5, 3.5, 2, 1] (T = 6),
    r3 [4, 3, 2, 1] (T = 0); rank sums 11.5, 9, 6.5, 3 (mean 7.5) -> S = 39.5;
    W = 12 S / (m^2 (n^3 - n) - m sum T) = 474 / (540 - 36) = 0.94048 (uncorrected 0.8778).
    """
    scores = np.array([[5, 4, 4, 2], [5, 5, 3, 1], [4, 3, 2, 1]]).T
    result = kendall_w(scores)
    assert result.w == pytest.approx(474 / 504)
    assert result.chi2 == pytest.approx(3 * 3 * 474 / 504)
    # Cross-check: W = Friedman's tie-corrected chi-square / (m (n - 1)).
    friedman = stats.friedmanchisquare(*scores).statistic
    assert result.w == pytest.approx(friedman / (3 * 3))
    assert math.isnan(kendall_w(np.full((3, 2), 4.0)).w)  # all tied: undefined


def test_mean_ci_by_hand() -> None:
    est = mean_ci([2.0, 4.0, 6.0])
    half = 4.302652729911275 * 2.0 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert (est.mean, est.sd, est.n) == (4.0, 2.0, 3)
    assert (est.low, est.high) == pytest.approx((4 - half, 4 + half))
    one = mean_ci([3.0])
    assert one.mean == 3.0 and math.isnan(one.low)
    assert mean_ci([]).n == 0


def test_sign_test_wilson_and_holm_by_hand() -> None:
    assert sign_test(9, 1) == pytest.approx(2 * 11 / 1024)  # 2 * P(X <= 1), X ~ B(10, 1/2)
    assert math.isnan(sign_test(0, 0))
    low, high = wilson_interval(8, 10)
    assert (low, high) == pytest.approx((0.4902, 0.9433), abs=0.0001)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = holm([0.2, float("nan")])
    assert adjusted[0] == 0.2 and math.isnan(adjusted[1])


def _rating(reader: str, case: str, method: str, q: int, u: int, **kw: object) -> RatingRecord:
    return RatingRecord(reader, case, method, q, u, **kw)


RATINGS = [
    # method a: quality (r1, r2) per case: c1 (4, 5), c2 (3, 4), c3 (5, 5)
    _rating("r1", "c1", "a", 4, 4, flags=("artefact",)),
    _rating("r2", "c1", "a", 5, 4),
    _rating("r1", "c2", "a", 3, 3),
    _rating("r2", "c2", "a", 4, 3, flags=("artefact", "noise"), comment="ringing"),
    _rating("r1", "c3", "a", 5, 5),
    _rating("r2", "c3", "a", 5, 4),
    # method b: r2 did not rate c1 yet; quality c1 (3, -), c2 (2, 3), c3 (1, 2)
    _rating("r1", "c1", "b", 3, 2),
    _rating("r1", "c2", "b", 2, 2),
    _rating("r2", "c2", "b", 3, 2, flags=("hallucinated_structure",)),
    _rating("r1", "c3", "b", 1, 1),
    _rating("r2", "c3", "b", 2, 1),
]


def test_mos_per_method_by_hand() -> None:
    result = analyse_ratings(RATINGS)
    assert result.methods == ("a", "b") and result.readers == ("r1", "r2")
    assert result.n_answers == 11
    a = result.mos_for("a", "quality")
    case_means = [4.5, 3.5, 5.0]
    assert a.mos == pytest.approx(13 / 3)
    half = stats.t.ppf(0.975, 2) * statistics.stdev(case_means) / math.sqrt(3)
    assert (a.ci_low, a.ci_high) == pytest.approx((13 / 3 - half, 13 / 3 + half))
    assert (a.n_cases, a.n_ratings) == (3, 6)
    b = result.mos_for("b", "quality")
    # Mean of the per-case means (3, 2.5, 1.5) = 7/3, not the plain mean of ratings 11/5.
    assert b.mos == pytest.approx(7 / 3)
    assert (b.n_cases, b.n_ratings) == (3, 5)
    assert result.mos_for("b", "usefulness").mos == pytest.approx((2 + 2 + 1) / 3)
    assert result.reader_mos("r1", "a", "quality").mean == pytest.approx(4.0)
    assert result.reader_mos("r2", "b", "quality").n == 2
    assert result.flag_counts["a"]["artefact"] == 2
    assert result.flag_counts["b"]["hallucinated_structure"] == 1
    assert result.ratings_per_method == {"a": 6, "b": 5}
    assert [c.comment for c in result.comments] == ["ringing"]


def test_agreement_uses_images_rated_by_every_reader() -> None:
    result = analyse_ratings(RATINGS)
    quality = next(a for a in result.agreement if a.scale == "quality")
    assert (quality.n_complete_images, quality.n_images) == (5, 6)
    expected = icc2([[4, 5], [3, 4], [5, 5], [2, 3], [1, 2]])
    assert quality.icc.icc_single == pytest.approx(expected.icc_single)
    assert quality.icc.icc_average == pytest.approx(expected.icc_average)
    assert quality.w_images.w == pytest.approx(
        kendall_w([[4, 5], [3, 4], [5, 5], [2, 3], [1, 2]]).w
    )
    # Method ranking from each reader's mean: both readers put a above b -> W = 1.
    assert quality.w_methods.w == pytest.approx(1.0)
    single = analyse_ratings([r for r in RATINGS if r.reader == "r1"])
    assert all(a.icc is None and a.w_methods is None for a in single.agreement)


def _offset_ratings(offset: int) -> list[RatingRecord]:
    """10 cases x 4 readers; readers r0/r1 score ``offset`` above the case, r2/r3 below,
    so the per-case means do not depend on ``offset``."""
    base = [2, 3, 4, 3, 2, 4, 3, 3, 2, 4]
    shifts = {"r0": offset, "r1": offset, "r2": -offset, "r3": -offset}
    return [
        _rating(reader, f"c{c}", "m", base[c] + shift, base[c] + shift)
        for c in range(10)
        for reader, shift in shifts.items()
    ]


def test_bootstrap_is_reproducible_and_covers_reader_variation() -> None:
    records = _offset_ratings(1)
    first = analyse_ratings(records, bootstrap=400, seed=1)
    again = analyse_ratings(records, bootstrap=400, seed=1)
    other = analyse_ratings(records, bootstrap=400, seed=2)
    assert first.mos == again.mos
    assert first.mos != other.mos
    for row in first.mos:
        assert row.boot_low <= row.mos <= row.boot_high
    # Reader offsets cancel in the per-case means, so the t interval cannot see them;
    # the bootstrap (which resamples readers too) must widen.
    calm = analyse_ratings(_offset_ratings(0), bootstrap=400, seed=1).mos_for("m", "quality")
    busy = first.mos_for("m", "quality")
    assert (busy.ci_low, busy.ci_high) == pytest.approx((calm.ci_low, calm.ci_high))
    assert busy.boot_high - busy.boot_low > 1.5 * (calm.boot_high - calm.boot_low)
    assert math.isnan(analyse_ratings(records).mos[0].boot_low)


def test_duplicate_ratings_are_refused() -> None:
    with pytest.raises(ConfigError, match="two ratings"):
        analyse_ratings([RATINGS[0], RATINGS[0]])


PREFERENCES = [
    PreferenceRecord("r1", "c1", left="hr", right="sr", choice="left"),  # hr
    PreferenceRecord("r1", "c2", left="sr", right="hr", choice="right"),  # hr
    PreferenceRecord("r2", "c1", left="hr", right="sr", choice="none"),
    PreferenceRecord("r2", "c2", left="sr", right="hr", choice="left", comment="sharper"),  # sr
    PreferenceRecord("r1", "c1", left="bic", right="sr", choice="right"),  # sr
    PreferenceRecord("r2", "c1", left="sr", right="bic", choice="left"),  # sr
]


def test_pairwise_preferences_by_hand() -> None:
    result = analyse_preferences(PREFERENCES)
    hr_sr = result.pair("sr", "hr")
    assert (hr_sr.method_a, hr_sr.wins_a, hr_sr.wins_b, hr_sr.ties) == ("hr", 2, 1, 1)
    assert hr_sr.share_a == pytest.approx(2 / 3)
    assert hr_sr.p_value == pytest.approx(1.0)
    bic_sr = result.pair("bic", "sr")
    assert (bic_sr.wins_a, bic_sr.wins_b, bic_sr.share_a) == (0, 2, 0.0)
    assert bic_sr.p_value == pytest.approx(0.5)
    assert [p.p_holm for p in result.pairs] == pytest.approx([1.0, 1.0])
    per_method = {m.method: m for m in result.per_method}
    assert (per_method["hr"].wins, per_method["hr"].losses, per_method["hr"].ties) == (2, 1, 1)
    assert per_method["sr"].share == pytest.approx(3 / 5)
    assert per_method["bic"].share == 0.0
    bias = result.side_bias
    assert (bias.left, bias.right, bias.none) == (3, 2, 1)
    assert bias.p_value == pytest.approx(1.0)
    assert result.n_answers == 6 and [c.comment for c in result.comments] == ["sharper"]
    with pytest.raises(ConfigError, match="no comparison"):
        result.pair("hr", "bic")
