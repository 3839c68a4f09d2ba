"""Per-rater reliability signals: position bias, gold accuracy, straight-lining and speed.

All functions return arrays indexed by rater code (length `n_raters`), NaN where a
figure is undefined for a rater (no judgments of the needed kind).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest
from statsmodels.stats.proportion import proportion_confint

from curation.stats.judgments import (
    CHOICE_TIE,
    SIDE_LEFT,
    SIDE_TIE,
    CurationInputError,
    PairwiseJudgments,
    as_codes,
)


@dataclass(frozen=True)
class PositionBias:
    """Per rater: left choices among side choices (ties excluded), their share and the
    two-sided exact binomial p-value against 0.5; `flagged` is p < `alpha_level`.

    The test is per rater; with many raters, `alpha_level` should absorb the number of
    tests (the default 0.001 is strict on purpose).
    """

    n_sided: np.ndarray
    n_left: np.ndarray
    left_share: np.ndarray
    p_value: np.ndarray
    flagged: np.ndarray
    alpha_level: float
    message: str | None = None


def position_bias(judgments: PairwiseJudgments, *, alpha_level: float = 0.001) -> PositionBias:
    """Share of left choices per rater with scipy's exact binomial test against 0.5.

    Meaningful because the workspace randomises which image is on the left per
    judgment: an unbiased rater's left share is 0.5 whatever their taste.
    """
    if not 0.0 < alpha_level < 1.0:
        raise CurationInputError(f"alpha_level must lie in (0, 1), got {alpha_level}")
    if judgments.left_is_a is None:
        raise CurationInputError("position_bias needs left_is_a")
    side = judgments.presented_side()
    sided = side != SIDE_TIE
    n_raters = judgments.n_raters
    n_sided = np.bincount(judgments.rater, weights=sided, minlength=n_raters).astype(np.int64)
    n_left = np.bincount(judgments.rater, weights=side == SIDE_LEFT, minlength=n_raters).astype(np.int64)
    p_value = np.full(n_raters, np.nan)
    for r in np.flatnonzero(n_sided):
        p_value[r] = binomtest(int(n_left[r]), int(n_sided[r]), 0.5).pvalue
    with np.errstate(divide="ignore", invalid="ignore"):
        left_share = np.where(n_sided > 0, n_left / n_sided, np.nan)
    message = None if n_sided.any() else "no judgment chose a side"
    return PositionBias(
        n_sided=n_sided,
        n_left=n_left,
        left_share=left_share,
        p_value=p_value,
        flagged=p_value < alpha_level,
        alpha_level=alpha_level,
        message=message,
    )


@dataclass(frozen=True)
class GoldAccuracy:
    """Per rater: judgments on gold units, correct ones, accuracy and its Wilson interval."""

    n_gold: np.ndarray
    n_correct: np.ndarray
    accuracy: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    message: str | None = None


def gold_accuracy(judgments: PairwiseJudgments, *, gold, confidence: float = 0.95) -> GoldAccuracy:
    """Accuracy of each rater on gold units.

    `gold[u]` is the known answer of unit u (CHOICE_A / CHOICE_B / CHOICE_TIE) or -1
    when u is not a gold unit.
    """
    gold = np.asarray(gold, dtype=np.int64)
    if gold.shape != (judgments.n_units,):
        raise CurationInputError("gold needs one entry per unit (-1 for non-gold units)")
    if gold.size and (gold.min() < -1 or gold.max() > CHOICE_TIE):
        raise CurationInputError("gold entries must be -1, 0 (a), 1 (b) or 2 (tie)")
    answer = gold[judgments.unit]
    on_gold = answer >= 0
    n_raters = judgments.n_raters
    n_gold = np.bincount(judgments.rater, weights=on_gold, minlength=n_raters).astype(np.int64)
    n_correct = np.bincount(judgments.rater, weights=on_gold & (judgments.choice == answer), minlength=n_raters).astype(
        np.int64
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        accuracy = np.where(n_gold > 0, n_correct / n_gold, np.nan)
        low, high = proportion_confint(n_correct, np.maximum(n_gold, 1), alpha=1 - confidence, method="wilson")
    low = np.where(n_gold > 0, low, np.nan)
    high = np.where(n_gold > 0, high, np.nan)
    message = None if n_gold.any() else "no judgments on gold units"
    return GoldAccuracy(
        n_gold=n_gold, n_correct=n_correct, accuracy=accuracy, ci_low=low, ci_high=high, message=message
    )


@dataclass(frozen=True)
class StraightLining:
    """Per rater: share of their most frequent answer, which answer it is, and the
    longest and mean run of identical consecutive answers (rows in time order)."""

    n_judgments: np.ndarray
    top_answer: np.ndarray
    top_share: np.ndarray
    longest_run: np.ndarray
    mean_run: np.ndarray


def straight_lining(*, rater, answer, n_raters: int | None = None, order=None) -> StraightLining:
    """Straight-lining signals from any coded answers.

    For pairwise work pass `judgments.presented_side()` (left / right / tie): an
    always-left rater is a straight-liner on the screen even though their a / b
    answers look random. `order` (e.g. submit timestamps) sorts each rater's rows;
    by default rows are taken in the given order. `top_answer` is -1 for raters
    without judgments.
    """
    rater = as_codes(rater, name="rater")
    answer = as_codes(answer, name="answer")
    if answer.size != rater.size:
        raise CurationInputError("rater and answer must have equal lengths")
    n_raters = int(n_raters if n_raters is not None else (rater.max() + 1 if rater.size else 0))
    n_answers = int(answer.max()) + 1 if answer.size else 1
    counts = np.bincount(rater * n_answers + answer, minlength=n_raters * n_answers).reshape(n_raters, n_answers)
    n_judgments = counts.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        top_share = np.where(n_judgments > 0, counts.max(axis=1) / n_judgments, np.nan)
    top_answer = np.where(n_judgments > 0, counts.argmax(axis=1), -1)

    # Rater first, then time (np.lexsort sorts by its last key first).
    rows = np.argsort(rater, kind="stable") if order is None else np.lexsort((np.asarray(order), rater))
    r, a = rater[rows], answer[rows]
    starts = np.ones(r.size, dtype=bool)
    starts[1:] = (r[1:] != r[:-1]) | (a[1:] != a[:-1])
    run_start = np.flatnonzero(starts)
    run_length = np.diff(np.append(run_start, r.size))
    run_rater = r[run_start]
    longest_run = np.zeros(n_raters, dtype=np.int64)
    np.maximum.at(longest_run, run_rater, run_length)
    n_runs = np.bincount(run_rater, minlength=n_raters)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_run = np.where(n_runs > 0, n_judgments / n_runs, np.nan)
    return StraightLining(
        n_judgments=n_judgments, top_answer=top_answer, top_share=top_share, longest_run=longest_run, mean_run=mean_run
    )


@dataclass(frozen=True)
class JudgmentTime:
    """Per rater: median seconds per judgment and the share faster than `fast_seconds`."""

    n_timed: np.ndarray
    median_seconds: np.ndarray
    fast_share: np.ndarray
    dropped_nan: int
    fast_seconds: float


def judgment_time(judgments: PairwiseJudgments, *, fast_seconds: float = 1.0) -> JudgmentTime:
    """Median time per judgment per rater; NaN times (unknown latency) are dropped and counted."""
    if judgments.seconds is None:
        raise CurationInputError("judgment_time needs seconds")
    seconds = judgments.seconds
    timed = np.isfinite(seconds)
    rater, seconds = judgments.rater[timed], seconds[timed]
    n_raters = judgments.n_raters
    n_timed = np.bincount(rater, minlength=n_raters)
    rows = np.lexsort((seconds, rater))
    sorted_seconds = seconds[rows]
    start = np.concatenate([[0], np.cumsum(n_timed)[:-1]])
    median = np.full(n_raters, np.nan)
    has = n_timed > 0
    low = start[has] + (n_timed[has] - 1) // 2
    high = start[has] + n_timed[has] // 2
    median[has] = (sorted_seconds[low] + sorted_seconds[high]) / 2.0
    fast = np.bincount(rater, weights=seconds < fast_seconds, minlength=n_raters)
    with np.errstate(divide="ignore", invalid="ignore"):
        fast_share = np.where(has, fast / n_timed, np.nan)
    return JudgmentTime(
        n_timed=n_timed,
        median_seconds=median,
        fast_share=fast_share,
        dropped_nan=int((~timed).sum()),
        fast_seconds=fast_seconds,
    )
