"""Statistics of a reader study: MOS with confidence intervals, agreement, preferences.

Definitions (see ``docs/reader-study.md`` for the assumptions):

* **MOS** of a method on a scale = mean over cases of the per-case mean rating (mean over
  the readers who rated that image). With complete data this equals the plain mean of
  all ratings. Its **t interval** is ``mean +- t(1 - a/2, C - 1) * sd / sqrt(C)`` over
  the ``C`` per-case means: cases are the random sample, readers are treated as fixed
  (averaging over readers first removes the correlation between ratings of one image).
  The optional **bootstrap** interval resamples cases *and* readers (independently, with
  replacement) and so also covers reader-to-reader variation.
* **ICC(2,1)** and **ICC(2,k)** (Shrout & Fleiss 1979; McGraw & Wong's ICC(A,1) and
  ICC(A,k)): two-way random effects, absolute agreement, single rater and mean of the k
  raters. Targets are the rated images (case x method), raters the readers; only
  images rated by every reader enter. Confidence intervals follow Shrout & Fleiss.
* **Kendall's W** with the tie correction (Kendall & Babington Smith 1939):
  ``W = 12 S / (m^2 (n^3 - n) - m sum_j T_j)`` with ``T_j = sum (t^3 - t)`` over the
  groups of ties of rater ``j``; tested with ``chi2 = m (n - 1) W`` on ``n - 1`` degrees of
  freedom.
* **Pairwise**: for each pair of methods the share of decided comparisons won by each,
  its Wilson interval, and an exact two-sided sign (binomial, p = 0.5) test with ties
  ("no preference") left out; Holm's correction over the pairs.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from medsr.errors import ConfigError
from medsr.study.design import FLAGS, SCALES, PreferenceRecord, RatingRecord

if TYPE_CHECKING:
    from medsr.study.store import Study

NAN = float("nan")


def _check_confidence(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be between 0 and 1, got {confidence}")
    return float(confidence)


# ------------------------------------------------------------------------ building blocks


@dataclass(frozen=True)
class Estimate:
    """A mean with a two-sided confidence interval over ``n`` values (NaN when n < 2)."""

    mean: float
    low: float
    high: float
    n: int
    sd: float


def mean_ci(values: Sequence[float] | np.ndarray, *, confidence: float = 0.95) -> Estimate:
    """Mean and Student-t confidence interval of ``values`` (finite numbers, 1-D)."""
    from scipy import stats

    confidence = _check_confidence(confidence)
    x = np.asarray(values, dtype=np.float64).ravel()
    n = int(x.size)
    if n == 0:
        return Estimate(NAN, NAN, NAN, 0, NAN)
    mean = float(x.mean())
    if n == 1:
        return Estimate(mean, NAN, NAN, 1, NAN)
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return Estimate(mean, mean - half, mean + half, n, sd)


@dataclass(frozen=True)
class ICCResult:
    """ICC(2,1) and ICC(2,k) of an (n targets, k raters) table, with the ANOVA behind them.

    ``f_value`` = MS_targets / MS_error tests ICC = 0 on (``df1``, ``df2``) degrees of
    freedom. Intervals are NaN when they cannot be computed (e.g. no error variance).
    """

    icc_single: float
    icc_average: float
    single_low: float
    single_high: float
    average_low: float
    average_high: float
    ms_targets: float
    ms_raters: float
    ms_error: float
    f_value: float
    df1: int
    df2: int
    p_value: float
    n_targets: int
    k_raters: int
    confidence: float


def icc2(table: Sequence[Sequence[float]] | np.ndarray, *, confidence: float = 0.95) -> ICCResult:
    """Two-way random, absolute-agreement ICCs (Shrout & Fleiss ICC(2,1) and ICC(2,k)).

    ``table`` is (n targets, k raters) with no missing values; n >= 2 and k >= 2.
    """
    from scipy import stats

    confidence = _check_confidence(confidence)
    x = np.asarray(table, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise ConfigError(f"ICC needs a table of at least 2 targets x 2 raters, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ConfigError("ICC needs a complete table (no missing or non-finite values)")
    n, k = x.shape
    grand = x.mean()
    ss_targets = k * float(((x.mean(axis=1) - grand) ** 2).sum())
    ss_raters = n * float(((x.mean(axis=0) - grand) ** 2).sum())
    ss_error = float(((x - grand) ** 2).sum()) - ss_targets - ss_raters
    bms = ss_targets / (n - 1)
    jms = ss_raters / (k - 1)
    ems = max(ss_error, 0.0) / ((n - 1) * (k - 1))
    single_den = bms + (k - 1) * ems + k * (jms - ems) / n
    average_den = bms + (jms - ems) / n
    icc_single = (bms - ems) / single_den if single_den > 0 else NAN
    icc_average = (bms - ems) / average_den if average_den > 0 else NAN
    df1, df2 = n - 1, (n - 1) * (k - 1)
    if ems > 0:
        f_value = bms / ems
        p_value = float(stats.f.sf(f_value, df1, df2))
    else:
        f_value, p_value = math.inf if bms > 0 else NAN, 0.0 if bms > 0 else NAN
    single_low, single_high = _icc2_interval(
        bms, jms, ems, n=n, k=k, rho=icc_single, confidence=confidence
    )

    def spearman_brown(r: float) -> float:
        return k * r / (1 + (k - 1) * r) if math.isfinite(r) else NAN

    return ICCResult(
        icc_single=icc_single,
        icc_average=icc_average,
        single_low=single_low,
        single_high=single_high,
        average_low=spearman_brown(single_low),
        average_high=spearman_brown(single_high),
        ms_targets=bms,
        ms_raters=jms,
        ms_error=ems,
        f_value=f_value,
        df1=df1,
        df2=df2,
        p_value=p_value,
        n_targets=n,
        k_raters=k,
        confidence=confidence,
    )


def _icc2_interval(
    bms: float, jms: float, ems: float, *, n: int, k: int, rho: float, confidence: float
) -> tuple[float, float]:
    """Shrout & Fleiss (1979) interval for ICC(2,1): F quantiles with Satterthwaite's
    approximate degrees of freedom ``v`` for the denominator mixture of MS_raters and
    MS_error."""
    from scipy import stats

    if not (math.isfinite(rho) and ems > 0):
        return NAN, NAN
    f_j = jms / ems
    a = n * (1 + (k - 1) * rho) - k * rho
    v_num = (k - 1) * (n - 1) * (k * rho * f_j + a) ** 2
    v_den = (n - 1) * k**2 * rho**2 * f_j**2 + a**2
    if v_den <= 0:
        return NAN, NAN
    v = v_num / v_den
    q = 0.5 + confidence / 2
    f_upper = float(stats.f.ppf(q, n - 1, v))
    f_lower = float(stats.f.ppf(q, v, n - 1))
    mix = k * jms + (k * n - k - n) * ems
    low = n * (bms - f_upper * ems) / (f_upper * mix + n * bms)
    high = n * (f_lower * bms - ems) / (mix + n * f_lower * bms)
    return float(low), float(high)


@dataclass(frozen=True)
class KendallW:
    """Kendall's coefficient of concordance of m raters ranking n objects (tie-corrected)."""

    w: float
    chi2: float
    df: int
    p_value: float
    n_objects: int
    m_raters: int


def kendall_w(table: Sequence[Sequence[float]] | np.ndarray) -> KendallW:
    """Kendall's W of an (n objects, m raters) table of scores (ranked per rater, ties
    get their mean rank). W is NaN when every rater gave every object the same score."""
    from scipy import stats

    x = np.asarray(table, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise ConfigError(f"Kendall's W needs at least 2 objects x 2 raters, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ConfigError("Kendall's W needs a complete table (no missing values)")
    n, m = x.shape
    ranks = np.column_stack([stats.rankdata(x[:, j]) for j in range(m)])
    totals = ranks.sum(axis=1)
    s = float(((totals - totals.mean()) ** 2).sum())
    ties = 0.0
    for j in range(m):
        _, counts = np.unique(x[:, j], return_counts=True)
        ties += float((counts**3 - counts).sum())
    denominator = m**2 * (n**3 - n) - m * ties
    if denominator <= 0:
        return KendallW(NAN, NAN, n - 1, NAN, n, m)
    w = 12 * s / denominator
    chi2 = m * (n - 1) * w
    return KendallW(w, chi2, n - 1, float(stats.chi2.sf(chi2, n - 1)), n, m)


def sign_test(wins_a: int, wins_b: int) -> float:
    """Exact two-sided binomial (sign) test of ``wins_a`` vs ``wins_b`` at p = 0.5."""
    from scipy import stats

    if wins_a + wins_b == 0:
        return NAN
    return float(stats.binomtest(wins_a, wins_a + wins_b, 0.5).pvalue)


def wilson_interval(
    successes: int, trials: int, *, confidence: float = 0.95
) -> tuple[float, float]:
    """Wilson score interval of a proportion (NaN for zero trials)."""
    from scipy import stats

    if trials == 0:
        return NAN, NAN
    z = float(stats.norm.ppf(0.5 + _check_confidence(confidence) / 2))
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials**2)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN entries are kept and not counted)."""
    indexed = [(p, i) for i, p in enumerate(p_values) if not math.isnan(p)]
    indexed.sort()
    adjusted = [NAN] * len(p_values)
    running = 0.0
    m = len(indexed)
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


# --------------------------------------------------------------------- rating mode


@dataclass(frozen=True)
class MethodMOS:
    """MOS of one method on one scale, with its t interval over cases (and bootstrap)."""

    method: str
    scale: str
    mos: float
    ci_low: float
    ci_high: float
    n_cases: int
    n_ratings: int
    sd_ratings: float
    boot_low: float = NAN
    boot_high: float = NAN


@dataclass(frozen=True)
class ReaderMOS:
    """Mean rating of one reader for one method on one scale over ``n`` images."""

    reader: str
    method: str
    scale: str
    mean: float
    n: int


@dataclass(frozen=True)
class Agreement:
    """Inter-reader agreement on one scale; ``None`` where there is too little data."""

    scale: str
    icc: ICCResult | None
    w_images: KendallW | None
    w_methods: KendallW | None
    n_complete_images: int
    n_images: int


@dataclass(frozen=True)
class RatingAnalysis:
    confidence: float
    bootstrap: int
    methods: tuple[str, ...]
    readers: tuple[str, ...]
    cases: tuple[str, ...]
    mos: tuple[MethodMOS, ...]
    per_reader: tuple[ReaderMOS, ...]
    agreement: tuple[Agreement, ...]
    flag_counts: Mapping[str, Mapping[str, int]]
    ratings_per_method: Mapping[str, int]
    comments: tuple[RatingRecord, ...]
    n_answers: int

    def mos_for(self, method: str, scale: str) -> MethodMOS:
        for row in self.mos:
            if row.method == method and row.scale == scale:
                return row
        raise ConfigError(
            f"no MOS for method {method!r} on scale {scale!r}; methods: {', '.join(self.methods)}"
        )

    def reader_mos(self, reader: str, method: str, scale: str) -> ReaderMOS | None:
        for row in self.per_reader:
            if (row.reader, row.method, row.scale) == (reader, method, scale):
                return row
        return None


def _score_cube(
    records: Sequence[RatingRecord], methods: list[str], cases: list[str], readers: list[str]
) -> dict[str, np.ndarray]:
    """scale -> array (methods, cases, readers) of scores, NaN where not rated."""
    m_index = {m: i for i, m in enumerate(methods)}
    c_index = {c: i for i, c in enumerate(cases)}
    r_index = {r: i for i, r in enumerate(readers)}
    cubes = {s: np.full((len(methods), len(cases), len(readers)), np.nan) for s in SCALES}
    for rec in records:
        where = (m_index[rec.method], c_index[rec.case], r_index[rec.reader])
        for scale in SCALES:
            cubes[scale][where] = rec.score(scale)
    return cubes


def _nanmean(x: np.ndarray, axis: int | tuple[int, ...]) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN on purpose
        return np.nanmean(x, axis=axis)


def analyse_ratings(
    records: Sequence[RatingRecord],
    *,
    confidence: float = 0.95,
    bootstrap: int = 0,
    seed: int = 0,
) -> RatingAnalysis:
    """MOS per method and scale, per reader, agreement and flag counts of ``records``.

    ``bootstrap`` > 0 adds percentile intervals from that many resamples of cases and
    readers (NumPy generator seeded with ``seed``).
    """
    confidence = _check_confidence(confidence)
    if bootstrap < 0:
        raise ConfigError(f"bootstrap must be 0 (off) or a number of resamples, got {bootstrap}")
    seen = set()
    for rec in records:
        key = (rec.reader, rec.case, rec.method)
        if key in seen:
            raise ConfigError(f"two ratings for reader/case/method {key}")
        seen.add(key)
    methods = sorted({r.method for r in records})
    cases = sorted({r.case for r in records})
    readers = sorted({r.reader for r in records})
    cubes = _score_cube(records, methods, cases, readers)

    boot: dict[str, np.ndarray] = {}
    if bootstrap and records:
        rng = np.random.default_rng(seed)
        for scale in SCALES:
            boot[scale] = np.empty((bootstrap, len(methods)))
        for b in range(bootstrap):
            pick_c = rng.integers(0, len(cases), len(cases))
            pick_r = rng.integers(0, len(readers), len(readers))
            for scale in SCALES:
                sample = cubes[scale][:, pick_c][:, :, pick_r]
                boot[scale][b] = _nanmean(_nanmean(sample, axis=2), axis=1)

    mos_rows = []
    for scale in SCALES:
        case_means = _nanmean(cubes[scale], axis=2)  # (methods, cases)
        for i, method in enumerate(methods):
            per_case = case_means[i][np.isfinite(case_means[i])]
            est = mean_ci(per_case, confidence=confidence)
            ratings = cubes[scale][i][np.isfinite(cubes[scale][i])]
            boot_low = boot_high = NAN
            if scale in boot:
                finite = boot[scale][:, i][np.isfinite(boot[scale][:, i])]
                if finite.size:
                    tail = 50 * (1 - confidence)
                    boot_low, boot_high = (
                        float(v) for v in np.percentile(finite, [tail, 100 - tail])
                    )
            mos_rows.append(
                MethodMOS(
                    method=method,
                    scale=scale,
                    mos=est.mean,
                    ci_low=est.low,
                    ci_high=est.high,
                    n_cases=est.n,
                    n_ratings=int(ratings.size),
                    sd_ratings=float(ratings.std(ddof=1)) if ratings.size > 1 else NAN,
                    boot_low=boot_low,
                    boot_high=boot_high,
                )
            )

    per_reader = []
    for scale in SCALES:
        for r, reader in enumerate(readers):
            for i, method in enumerate(methods):
                values = cubes[scale][i, :, r]
                values = values[np.isfinite(values)]
                if values.size:
                    per_reader.append(
                        ReaderMOS(reader, method, scale, float(values.mean()), int(values.size))
                    )

    agreement = tuple(_agreement(scale, cubes[scale], confidence=confidence) for scale in SCALES)
    flag_counts: dict[str, dict[str, int]] = {m: dict.fromkeys(FLAGS, 0) for m in methods}
    for rec in records:
        for flag in rec.flags:
            flag_counts[rec.method][flag] = flag_counts[rec.method].get(flag, 0) + 1
    per_method = Counter(rec.method for rec in records)
    return RatingAnalysis(
        confidence=confidence,
        bootstrap=bootstrap,
        methods=tuple(methods),
        readers=tuple(readers),
        cases=tuple(cases),
        mos=tuple(mos_rows),
        per_reader=tuple(per_reader),
        agreement=agreement,
        flag_counts=flag_counts,
        ratings_per_method=dict(per_method),
        comments=tuple(r for r in records if r.comment),
        n_answers=len(records),
    )


def _agreement(scale: str, cube: np.ndarray, *, confidence: float) -> Agreement:
    n_methods, n_cases, n_readers = cube.shape
    table = cube.reshape(n_methods * n_cases, n_readers)  # images x readers
    rated = np.isfinite(table).any(axis=1)
    complete = np.isfinite(table).all(axis=1)
    full = table[complete]
    icc = w_images = w_methods = None
    if n_readers >= 2 and full.shape[0] >= 2:
        icc = icc2(full, confidence=confidence)
        w_images = kendall_w(full)
    reader_means = _nanmean(cube, axis=1)  # (methods, readers)
    usable = np.isfinite(reader_means).all(axis=0)
    if n_methods >= 2 and usable.sum() >= 2:
        w_methods = kendall_w(reader_means[:, usable])
    return Agreement(
        scale=scale,
        icc=icc,
        w_images=w_images,
        w_methods=w_methods,
        n_complete_images=int(complete.sum()),
        n_images=int(rated.sum()),
    )


# -------------------------------------------------------------------- pairwise mode


@dataclass(frozen=True)
class PairComparison:
    """Outcome of all comparisons of ``method_a`` with ``method_b`` (a < b by name)."""

    method_a: str
    method_b: str
    wins_a: int
    wins_b: int
    ties: int
    share_a: float
    ci_low: float
    ci_high: float
    p_value: float
    p_holm: float


@dataclass(frozen=True)
class MethodPreference:
    """How often a method won its decided comparisons (over all its pairs)."""

    method: str
    wins: int
    losses: int
    ties: int
    share: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class ReaderPreference:
    reader: str
    method: str
    wins: int
    losses: int
    ties: int


@dataclass(frozen=True)
class SideBias:
    """Left vs right choices over all answers: a small p-value means readers favoured a
    side regardless of the method shown there."""

    left: int
    right: int
    none: int
    p_value: float


@dataclass(frozen=True)
class PairwiseAnalysis:
    confidence: float
    methods: tuple[str, ...]
    readers: tuple[str, ...]
    cases: tuple[str, ...]
    pairs: tuple[PairComparison, ...]
    per_method: tuple[MethodPreference, ...]
    per_reader: tuple[ReaderPreference, ...]
    side_bias: SideBias
    w_methods: KendallW | None
    comments: tuple[PreferenceRecord, ...]
    n_answers: int

    def pair(self, method_a: str, method_b: str) -> PairComparison:
        a, b = sorted((method_a, method_b))
        for row in self.pairs:
            if (row.method_a, row.method_b) == (a, b):
                return row
        raise ConfigError(f"no comparison of {method_a!r} with {method_b!r} in this study")


def analyse_preferences(
    records: Sequence[PreferenceRecord], *, confidence: float = 0.95
) -> PairwiseAnalysis:
    """Preference shares per pair and per method, sign tests and side bias of ``records``."""
    confidence = _check_confidence(confidence)
    methods = sorted({m for r in records for m in (r.left, r.right)})
    readers = sorted({r.reader for r in records})
    outcome: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    tally: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])  # reader, method
    sides = Counter(r.choice for r in records)
    for rec in records:
        a, b = sorted((rec.left, rec.right))
        winner = rec.preferred
        counts = outcome[a, b]
        if winner is None:
            counts[2] += 1
            tally[rec.reader, a][2] += 1
            tally[rec.reader, b][2] += 1
        else:
            loser = b if winner == a else a
            counts[0 if winner == a else 1] += 1
            tally[rec.reader, winner][0] += 1
            tally[rec.reader, loser][1] += 1
    keys = sorted(outcome)
    p_raw = [sign_test(outcome[k][0], outcome[k][1]) for k in keys]
    p_adj = holm(p_raw)
    pairs = []
    for key, p, p_h in zip(keys, p_raw, p_adj, strict=True):
        wins_a, wins_b, ties = outcome[key]
        decided = wins_a + wins_b
        low, high = wilson_interval(wins_a, decided, confidence=confidence)
        pairs.append(
            PairComparison(
                method_a=key[0],
                method_b=key[1],
                wins_a=wins_a,
                wins_b=wins_b,
                ties=ties,
                share_a=wins_a / decided if decided else NAN,
                ci_low=low,
                ci_high=high,
                p_value=p,
                p_holm=p_h,
            )
        )
    per_method = []
    for method in methods:
        rows = [tally[key] for key in tally if key[1] == method]
        wins = sum(row[0] for row in rows)
        losses = sum(row[1] for row in rows)
        ties = sum(row[2] for row in rows)
        low, high = wilson_interval(wins, wins + losses, confidence=confidence)
        per_method.append(
            MethodPreference(
                method,
                wins,
                losses,
                ties,
                wins / (wins + losses) if wins + losses else NAN,
                low,
                high,
            )
        )
    per_reader = [
        ReaderPreference(r, m, *tally[r, m]) for r in readers for m in methods if (r, m) in tally
    ]
    w_methods = None
    if len(methods) >= 2 and len(readers) >= 2:
        # Each reader's win share per method ranks the methods for that reader.
        shares = np.full((len(methods), len(readers)), np.nan)
        for j, reader in enumerate(readers):
            for i, method in enumerate(methods):
                wins, losses, ties = tally.get((reader, method), [0, 0, 0])
                total = wins + losses + ties
                if total:
                    shares[i, j] = (wins + 0.5 * ties) / total
        usable = np.isfinite(shares).all(axis=0)
        if usable.sum() >= 2:
            w_methods = kendall_w(shares[:, usable])
    return PairwiseAnalysis(
        confidence=confidence,
        methods=tuple(methods),
        readers=tuple(readers),
        cases=tuple(sorted({r.case for r in records})),
        pairs=tuple(pairs),
        per_method=tuple(per_method),
        per_reader=tuple(per_reader),
        side_bias=SideBias(
            sides["left"], sides["right"], sides["none"], sign_test(sides["left"], sides["right"])
        ),
        w_methods=w_methods,
        comments=tuple(r for r in records if r.comment),
        n_answers=len(records),
    )


def analyse_study(
    study: Study, *, confidence: float = 0.95, bootstrap: int = 0, seed: int = 0
) -> RatingAnalysis | PairwiseAnalysis:
    """Analyse the answers stored in ``study`` so far (by its mode)."""
    if study.mode == "rating":
        return analyse_ratings(
            study.rating_records(), confidence=confidence, bootstrap=bootstrap, seed=seed
        )
    return analyse_preferences(study.preference_records(), confidence=confidence)
