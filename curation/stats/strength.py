"""Preference strength, Secrets of RLHF II (Wang et al. 2024, section 2): per pair, the mean and
standard deviation across judges of the z-normalised score difference; the lowest percentiles are
flagged "likely wrong" and the next "ambiguous"."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from curation.stats.judgments import (
    CHOICE_A,
    CHOICE_B,
    CHOICE_TIE,
    CurationInputError,
    as_codes,
    last_per_unit_rater,
    same_length,
    share_of,
    verdict_codes,
)


class StrengthFlag(IntEnum):
    """A pair's place in the preference-strength ranking."""

    CLEAR = 0
    AMBIGUOUS = 1
    LIKELY_WRONG = 2
    UNSCORED = 3


@dataclass(frozen=True)
class PreferenceStrength:
    """Per pair: mean and standard deviation (ddof=1) across judges of the oriented
    difference r(chosen) - r(rejected), the number of judges, the rank of the mean
    (0 = weakest; -1 unscored) and its `StrengthFlag`. `left_out` names the judges a caller
    kept out of the computation, each with why (`preference_strength` itself leaves none out)."""

    mean: np.ndarray
    std: np.ndarray
    n_judges: np.ndarray
    rank: np.ndarray
    flag: np.ndarray
    likely_wrong_pct: float
    ambiguous_pct: float
    dropped_rows: int
    messages: tuple[str, ...] = ()
    left_out: tuple[str, ...] = ()


def _check_percentiles(likely_wrong_pct: float, ambiguous_pct: float) -> None:
    for name, value in (("likely_wrong_pct", likely_wrong_pct), ("ambiguous_pct", ambiguous_pct)):
        if not (np.isfinite(value) and 0.0 <= value <= 100.0):
            raise CurationInputError(f"{name} must lie in [0, 100], got {value}")
    if likely_wrong_pct + ambiguous_pct > 100.0:
        raise CurationInputError(
            f"likely_wrong_pct + ambiguous_pct must be at most 100, got {likely_wrong_pct + ambiguous_pct}"
        )


def preference_strength(
    *,
    pair,
    judge,
    score_a=None,
    score_b=None,
    verdict=None,
    chosen=None,
    n_pairs: int | None = None,
    likely_wrong_pct: float = 20.0,
    ambiguous_pct: float = 20.0,
) -> PreferenceStrength:
    """Secrets-of-RLHF-II preference strength of every pair across judges.

    One row per (pair, judge). A row with two finite scores contributes the judge's
    z-normalised difference (z over all of that judge's finite scores, so the mean
    cancels and the difference is (score_a - score_b) / judge std); otherwise, if
    `verdict` is given, the signed margin +1 (a), -1 (b), 0 (tie). Margins and z
    differences share one axis by convention only; keep verdict-only judges few.
    `chosen[p]` (CHOICE_A / CHOICE_B; default a) is the labelled preference of pair p:
    differences are oriented as r(chosen) - r(rejected), so a low mean says the judges
    disagree with the label. A judge's repeated rows on a pair: the last stands.

    Pairs ranked by mean (ties broken by pair code, so the order is deterministic): the
    lowest floor(n * likely_wrong_pct / 100) are LIKELY_WRONG, the next ones up to
    floor(n * (likely_wrong_pct + ambiguous_pct) / 100) AMBIGUOUS.
    """
    _check_percentiles(likely_wrong_pct, ambiguous_pct)
    pair = as_codes(pair, name="pair")
    judge = as_codes(judge, name="judge")
    n_rows = same_length(pair=pair, judge=judge)
    if score_a is None and score_b is None and verdict is None:
        raise CurationInputError("give score_a and score_b, or verdict, or both")
    if (score_a is None) != (score_b is None):
        raise CurationInputError("score_a and score_b go together")
    nan = np.full(n_rows, np.nan)
    score_a = nan if score_a is None else np.asarray(score_a, dtype=np.float64)
    score_b = nan if score_b is None else np.asarray(score_b, dtype=np.float64)
    verdict = None if verdict is None else verdict_codes(verdict)
    same_length(pair=pair, score_a=score_a, score_b=score_b, **({} if verdict is None else {"verdict": verdict}))
    n_pairs = int(n_pairs if n_pairs is not None else (pair.max() + 1 if n_rows else 0))
    if n_rows and pair.max() >= n_pairs:
        raise CurationInputError(f"pair holds code {int(pair.max())} but only {n_pairs} were declared")
    chosen = np.zeros(n_pairs, dtype=np.int64) if chosen is None else verdict_codes(chosen, name="chosen")
    if chosen.size != n_pairs:
        raise CurationInputError("chosen needs one entry per pair")
    if np.any(chosen == CHOICE_TIE):
        raise CurationInputError("chosen must be 0 (a) or 1 (b): a tie-labelled pair has no preference to weigh")

    messages = []
    keep, duplicates = last_per_unit_rater(pair, judge)
    if duplicates:
        messages.append(f"{duplicates} repeated judge row(s) on a pair; the last stands")
    pair, judge, score_a, score_b = pair[keep], judge[keep], score_a[keep], score_b[keep]
    verdict = None if verdict is None else verdict[keep]

    n_judges_total = int(judge.max()) + 1 if judge.size else 0
    values = np.concatenate([score_a, score_b])
    owners = np.concatenate([judge, judge])
    finite = np.isfinite(values)
    count = np.bincount(owners[finite], minlength=n_judges_total)
    mean = share_of(np.bincount(owners[finite], weights=values[finite], minlength=n_judges_total), count)
    deviation = values[finite] - mean[owners[finite]]
    spread = np.bincount(owners[finite], weights=deviation * deviation, minlength=n_judges_total)
    judge_std = np.sqrt(share_of(spread, count - 1))
    scored_judges = count >= 2
    flat = scored_judges & ~(judge_std > 1e-12 * np.maximum(np.abs(mean), 1.0))
    if flat.any():
        messages.append(f"{int(flat.sum())} judge(s) gave one score throughout; their scores are not used")

    scored = np.isfinite(score_a) & np.isfinite(score_b)
    with np.errstate(divide="ignore", invalid="ignore"):
        difference = np.where(scored & ~flat[judge], (score_a - score_b) / judge_std[judge], np.nan)
    if verdict is not None:
        margin = np.select([verdict == CHOICE_A, verdict == CHOICE_B], [1.0, -1.0], 0.0)
        difference = np.where(np.isnan(difference), margin, difference)
    usable = np.isfinite(difference)
    dropped_rows = int(usable.size - usable.sum())
    if dropped_rows:
        messages.append(f"{dropped_rows} row(s) had neither usable scores nor a verdict and were dropped")
    pair, difference = pair[usable], difference[usable]
    difference = np.where(chosen[pair] == CHOICE_B, -difference, difference)

    n_judges = np.bincount(pair, minlength=n_pairs)
    pair_mean = share_of(np.bincount(pair, weights=difference, minlength=n_pairs), n_judges)
    centred = difference - pair_mean[pair]
    pair_std = np.sqrt(share_of(np.bincount(pair, weights=centred * centred, minlength=n_pairs), n_judges - 1))

    ranked = np.flatnonzero(n_judges > 0)
    ranked = ranked[np.lexsort((ranked, pair_mean[ranked]))]
    rank = np.full(n_pairs, -1, dtype=np.int64)
    rank[ranked] = np.arange(ranked.size)
    n_wrong = int(np.floor(ranked.size * likely_wrong_pct / 100.0 + 1e-9))
    n_flagged = int(np.floor(ranked.size * (likely_wrong_pct + ambiguous_pct) / 100.0 + 1e-9))
    flag = np.full(n_pairs, StrengthFlag.UNSCORED, dtype=np.int8)
    flag[ranked] = StrengthFlag.CLEAR
    flag[ranked[n_wrong:n_flagged]] = StrengthFlag.AMBIGUOUS
    flag[ranked[:n_wrong]] = StrengthFlag.LIKELY_WRONG
    if n_rows == 0:
        messages.append("no judgments")
    elif ranked.size < n_pairs:
        messages.append(f"{n_pairs - ranked.size} pair(s) have no usable judge row and are unscored")
    if ranked.size and n_judges[ranked].max() < 2:
        messages.append("every pair has a single judge; the standard deviation is undefined")
    return PreferenceStrength(
        mean=pair_mean,
        std=pair_std,
        n_judges=n_judges,
        rank=rank,
        flag=flag,
        likely_wrong_pct=likely_wrong_pct,
        ambiguous_pct=ambiguous_pct,
        dropped_rows=dropped_rows,
        messages=tuple(messages),
    )
