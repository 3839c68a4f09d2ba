"""Inter-rater agreement: Krippendorff's alpha (with a unit bootstrap), Fleiss' and
Cohen's kappa, and each rater's agreement with the leave-one-out consensus.

Krippendorff's alpha is written from its definition (Krippendorff 2011, "Computing
Krippendorff's Alpha-Reliability"): with pairable values only (units holding two or
more values),

    alpha = 1 - D_o / D_e
    D_o = 1/n       * sum_u 1/(m_u - 1) * sum_{i != j in u} delta(v_i, v_j)
    D_e = 1/(n(n-1)) *                   sum_{i != j overall} delta(v_i, v_j)

which is the coincidence-matrix form summed without building the matrix. For nominal
data sum_{i != j in u} delta = m_u^2 - sum_c n_uc^2; for interval data (delta squared
difference) it is 2 (m_u S2_u - S1_u^2) with S1, S2 the sum and sum of squares. Both
are per-unit sums, so alpha and every bootstrap replicate are matrix products over
units.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from statsmodels.stats import inter_rater

from curation.stats.judgments import CurationInputError, PairwiseJudgments, Ratings, last_per_unit_rater

Level = Literal["nominal", "interval"]


@dataclass(frozen=True)
class AlphaResult:
    """Krippendorff's alpha, with a bootstrap interval when one was asked for.

    `alpha` is NaN when undefined, and `message` then says why. Counts describe the
    pairable data the figure rests on and what was left out.
    """

    alpha: float
    level: str
    n_units: int
    n_values: int
    dropped_nan: int = 0
    dropped_duplicates: int = 0
    dropped_single: int = 0
    message: str | None = None
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    confidence: float = float("nan")
    n_resamples: int = 0
    seed: int | None = None


@dataclass(frozen=True)
class _UnitStats:
    """Per pairable unit: column 0 m_u, column 1 the within-unit disagreement sum
    divided by (m_u - 1), then the level's marginal sums (category counts, or S1, S2)."""

    table: np.ndarray
    level: str
    n_units: int
    n_values: int
    dropped_nan: int
    dropped_duplicates: int
    dropped_single: int


def _unit_stats(ratings: Ratings, level: Level) -> _UnitStats:
    if level not in ("nominal", "interval"):
        raise CurationInputError(f"level must be 'nominal' or 'interval', got {level!r}")
    unit, rater, value = ratings.unit, ratings.rater, ratings.value
    dropped_nan = 0
    if value.dtype.kind == "f":
        finite = ~np.isnan(value)
        dropped_nan = int(value.size - finite.sum())
        if dropped_nan:
            unit, rater, value = unit[finite], rater[finite], value[finite]
    keep, dropped_duplicates = last_per_unit_rater(unit, rater)
    if dropped_duplicates:
        unit, value = unit[keep], value[keep]

    m_all = np.bincount(unit) if unit.size else np.zeros(0, dtype=np.int64)
    pairable = m_all[unit] >= 2 if unit.size else np.zeros(0, dtype=bool)
    dropped_single = int(unit.size - pairable.sum())
    unit, value = unit[pairable], value[pairable]
    # Dense codes for the pairable units only.
    unit_codes, unit = np.unique(unit, return_inverse=True)
    n_units = unit_codes.size
    m = np.bincount(unit, minlength=n_units).astype(np.float64)

    if level == "nominal":
        _, category = np.unique(value, return_inverse=True)
        n_categories = int(category.max()) + 1 if category.size else 0
        counts = np.bincount(unit * n_categories + category, minlength=n_units * n_categories)
        counts = counts.reshape(n_units, n_categories).astype(np.float64)
        within = m * m - (counts * counts).sum(axis=1)
        marginals = counts
    else:
        centred = value.astype(np.float64) - (value.mean() if value.size else 0.0)
        s1 = np.bincount(unit, weights=centred, minlength=n_units)
        s2 = np.bincount(unit, weights=centred * centred, minlength=n_units)
        within = 2.0 * (m * s2 - s1 * s1)
        marginals = np.column_stack([s1, s2])
    with np.errstate(divide="ignore", invalid="ignore"):
        disagreement = np.where(m > 1, within / (m - 1), 0.0)
    table = np.column_stack([m, disagreement, marginals])
    return _UnitStats(
        table=table,
        level=level,
        n_units=n_units,
        n_values=int(m.sum()),
        dropped_nan=dropped_nan,
        dropped_duplicates=dropped_duplicates,
        dropped_single=dropped_single,
    )


def _alpha_from_totals(totals: np.ndarray, level: str) -> np.ndarray:
    """Alpha for each row of summed unit statistics (see `_UnitStats`); NaN where D_e is 0."""
    n = totals[:, 0]
    observed = totals[:, 1]
    if level == "nominal":
        expected = n * n - (totals[:, 2:] ** 2).sum(axis=1)
    else:
        expected = 2.0 * (n * totals[:, 3] - totals[:, 2] ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = 1.0 - (n - 1.0) * observed / expected
    # Relative tolerance: interval sums carry rounding error of order n * eps.
    degenerate = ~(expected > 1e-9 * np.maximum(n * n, 1.0))
    return np.where(degenerate, np.nan, alpha)


def _undefined_message(stats: _UnitStats) -> str | None:
    if stats.n_units == 0:
        if stats.dropped_single:
            return "no unit has values from two or more raters; alpha needs pairable values"
        return "no judgments"
    return None


def _alpha_of(stats: _UnitStats) -> AlphaResult:
    common = dict(
        level=stats.level,
        n_units=stats.n_units,
        n_values=stats.n_values,
        dropped_nan=stats.dropped_nan,
        dropped_duplicates=stats.dropped_duplicates,
        dropped_single=stats.dropped_single,
    )
    message = _undefined_message(stats)
    if message:
        return AlphaResult(alpha=float("nan"), message=message, **common)
    alpha = float(_alpha_from_totals(stats.table.sum(axis=0, keepdims=True), stats.level)[0])
    if np.isnan(alpha):
        return AlphaResult(
            alpha=alpha,
            message="all pairable values are equal; expected disagreement is zero and alpha is undefined",
            **common,
        )
    return AlphaResult(alpha=alpha, **common)


def krippendorff_alpha(ratings: Ratings, *, level: Level = "nominal") -> AlphaResult:
    """Krippendorff's alpha of `ratings` at the nominal or interval level.

    NaN values are dropped (counted in `dropped_nan`); a rater's repeated values on one
    unit count once (the last row); units with a single value are not pairable and are
    left out (`dropped_single`). Alpha is NaN with a message when there are no pairable
    values or all values are equal (no expected disagreement).
    """
    return _alpha_of(_unit_stats(ratings, level))


def krippendorff_alpha_bootstrap(
    ratings: Ratings,
    *,
    level: Level = "nominal",
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    chunk: int = 32,
) -> AlphaResult:
    """Alpha with a percentile bootstrap interval from resampling units with replacement.

    Units, not single values, are resampled because a unit's values are dependent.
    The same inputs and `seed` give the same interval (replicates are drawn in chunks
    of `chunk`, which is part of the recipe). Replicates where alpha is undefined are
    left out of the percentiles.
    """
    if not 0 < confidence < 1:
        raise CurationInputError(f"confidence must lie in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise CurationInputError("n_resamples must be at least 1")
    stats = _unit_stats(ratings, level)
    point = _alpha_of(stats)
    if np.isnan(point.alpha):
        return point
    table = stats.table
    n_units = stats.n_units
    rng = np.random.default_rng(seed)
    replicates = np.empty(n_resamples)
    rows = np.arange(chunk)[:, None] * n_units
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        draws = rng.integers(0, n_units, size=(chunk, n_units))
        weights = np.bincount((rows + draws).ravel(), minlength=chunk * n_units).reshape(chunk, n_units)
        replicates[start : start + size] = _alpha_from_totals(weights[:size] @ table, level)
    finite = replicates[~np.isnan(replicates)]
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail]) if finite.size else (np.nan, np.nan)
    message = None
    if finite.size < n_resamples:
        message = f"{n_resamples - finite.size} of {n_resamples} bootstrap replicates had undefined alpha"
    return AlphaResult(
        alpha=point.alpha,
        level=level,
        n_units=point.n_units,
        n_values=point.n_values,
        dropped_nan=point.dropped_nan,
        dropped_duplicates=point.dropped_duplicates,
        dropped_single=point.dropped_single,
        message=message,
        ci_low=float(low),
        ci_high=float(high),
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
    )


@dataclass(frozen=True)
class KappaResult:
    """A kappa coefficient (NaN with a message when undefined) and the data it used."""

    kappa: float
    n_units: int
    message: str | None = None


def fleiss_kappa(judgments: PairwiseJudgments) -> KappaResult:
    """Fleiss' kappa (statsmodels) over a, b and tie.

    Fleiss' kappa needs the same number of ratings per unit, so only units with the
    most common count (at least 2) are used; `n_units` says how many, `message` how
    many were set aside.
    """
    counts = judgments.counts()
    per_unit = counts.sum(axis=1)
    rated = per_unit[per_unit >= 2]
    if rated.size == 0:
        return KappaResult(kappa=float("nan"), n_units=0, message="no unit has judgments from two or more raters")
    modal = int(np.bincount(rated).argmax())
    table = counts[per_unit == modal]
    set_aside = int(rated.size - table.shape[0])
    message = f"{set_aside} units with other than {modal} judgments were left out" if set_aside else None
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        kappa = float(inter_rater.fleiss_kappa(table, method="fleiss"))
    if not np.isfinite(kappa):
        return KappaResult(
            kappa=float("nan"),
            n_units=table.shape[0],
            message="all judgments fall in one category; chance agreement is 1 and kappa is undefined",
        )
    return KappaResult(kappa=kappa, n_units=table.shape[0], message=message)


def _within_unit_pairs(unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j), i before j, of rows sharing a unit."""
    order = np.argsort(unit, kind="stable")
    sorted_unit = unit[order]
    firsts, seconds = [], []
    offset = 1
    while offset < sorted_unit.size:
        same = sorted_unit[offset:] == sorted_unit[:-offset]
        if not same.any():
            break
        where = np.flatnonzero(same)
        firsts.append(order[where])
        seconds.append(order[where + offset])
        offset += 1
    if not firsts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(firsts), np.concatenate(seconds)


@dataclass(frozen=True)
class PairwiseKappa:
    """Cohen's kappa for every rater pair with at least `min_shared` common units.

    `kappa[r, s]` is NaN where the pair shared too few units or kappa is undefined;
    `shared[r, s]` is the number of common units; `mean` is Light's kappa (the mean
    over defined pairs).
    """

    kappa: np.ndarray
    shared: np.ndarray
    mean: float
    n_pairs: int
    message: str | None = None


def cohen_kappa_pairs(judgments: PairwiseJudgments, *, min_shared: int = 20) -> PairwiseKappa:
    """Cohen's kappa (statsmodels `cohens_kappa`) between every pair of raters over a, b, tie."""
    n_raters = judgments.n_raters
    keep, _ = last_per_unit_rater(judgments.unit, judgments.rater)
    unit, rater, choice = judgments.unit[keep], judgments.rater[keep], judgments.choice[keep]
    first, second = _within_unit_pairs(unit)
    low = np.minimum(rater[first], rater[second])
    high = np.maximum(rater[first], rater[second])
    swap = rater[first] > rater[second]
    choice_low = np.where(swap, choice[second], choice[first])
    choice_high = np.where(swap, choice[first], choice[second])
    key = ((low * n_raters + high) * 3 + choice_low) * 3 + choice_high
    pair_keys, pair_counts = np.unique(key, return_counts=True)

    kappa = np.full((n_raters, n_raters), np.nan)
    shared = np.zeros((n_raters, n_raters), dtype=np.int64)
    pair_of_key = pair_keys // 9
    boundaries = np.flatnonzero(np.diff(pair_of_key)) + 1
    for keys, counts in zip(np.split(pair_keys, boundaries), np.split(pair_counts, boundaries)):
        if keys.size == 0:
            continue
        pair = int(keys[0] // 9)
        r, s = divmod(pair, n_raters)
        table = np.zeros((3, 3))
        table[(keys % 9) // 3, keys % 3] = counts
        total = int(table.sum())
        shared[r, s] = shared[s, r] = total
        if total < min_shared:
            continue
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            value = float(inter_rater.cohens_kappa(table, return_results=False))
        if np.isfinite(value):
            kappa[r, s] = kappa[s, r] = value
    upper = kappa[np.triu_indices(n_raters, k=1)]
    defined = upper[~np.isnan(upper)]
    if defined.size == 0:
        return PairwiseKappa(
            kappa=kappa,
            shared=shared,
            mean=float("nan"),
            n_pairs=0,
            message=f"no rater pair shares {min_shared} or more units with a defined kappa",
        )
    return PairwiseKappa(kappa=kappa, shared=shared, mean=float(defined.mean()), n_pairs=int(defined.size))


@dataclass(frozen=True)
class ConsensusAgreement:
    """Per rater: how often their answer equals the consensus of the *other* raters.

    `agreement[r]` is NaN where rater r has no judgment on a unit whose leave-one-out
    consensus is decided (a strict plurality among the other judgments).
    """

    n_judgments: np.ndarray
    n_compared: np.ndarray
    agreement: np.ndarray
    message: str | None = None


def consensus_agreement(judgments: PairwiseJudgments) -> ConsensusAgreement:
    """Each rater's agreement with the leave-one-out plurality of the other judgments per unit.

    Leaving the rater's own judgment out keeps a rater from agreeing with themself,
    which would otherwise flatter raters on units with few judgments. Units where the
    others are split evenly between the top answers give no comparison.
    """
    counts = judgments.counts()
    own = np.zeros((len(judgments), 3), dtype=np.int64)
    own[np.arange(len(judgments)), judgments.choice] = 1
    others = counts[judgments.unit] - own
    top = others.max(axis=1)
    decided = (top > 0) & ((others == top[:, None]).sum(axis=1) == 1)
    agrees = decided & (others.argmax(axis=1) == judgments.choice)
    n_raters = judgments.n_raters
    n_judgments = np.bincount(judgments.rater, minlength=n_raters)
    n_compared = np.bincount(judgments.rater, weights=decided, minlength=n_raters).astype(np.int64)
    n_agree = np.bincount(judgments.rater, weights=agrees, minlength=n_raters)
    with np.errstate(divide="ignore", invalid="ignore"):
        agreement = np.where(n_compared > 0, n_agree / n_compared, np.nan)
    message = None
    if len(judgments) == 0:
        message = "no judgments"
    elif not n_compared.any():
        message = "no unit has a decided consensus among other raters"
    return ConsensusAgreement(n_judgments=n_judgments, n_compared=n_compared, agreement=agreement, message=message)
