"""Checks on per-image judgments (aspect scores, personal ratings): z-normalising each rater,
each rater's scores against their own pairwise choices, and test-retest of one rater.

Personal ratings are personal: there is no consensus to agree with, so each person is held
to their own consistency instead. Same conventions as the rest of `curation`: dense integer
codes, NaN values dropped and counted, degenerate data answered with NaN and a message.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.stats import ConstantInputWarning, pearsonr

from curation.stats.judgments import CHOICE_TIE, CurationInputError, as_codes
from curation.stats.score_pairs import score_pair_agreement


@dataclass(frozen=True)
class RaterZScores:
    """Each score as a z-score within its (rater, aspect); NaN where the score was NaN or its
    (rater, aspect) was dropped (fewer than the minimum scores, or one value throughout)."""

    z: np.ndarray
    dropped_nan: int
    dropped_constant_raters: int
    dropped_sparse_raters: int
    messages: tuple[str, ...] = ()


def rater_zscores(*, rater, score, aspect=None, min_scores_per_rater: int = 3) -> RaterZScores:
    """z-normalise every (rater, aspect)'s scores (sample standard deviation).

    Removes each rater's offset and spread on the scale. NaN scores are dropped and
    counted; a (rater, aspect) with fewer than `min_scores_per_rater` finite scores or with
    zero spread (a straight-liner) has no z-scores and is counted, not guessed.
    """
    rater = as_codes(rater, name="rater")
    score = np.asarray(score, dtype=np.float64)
    aspect = np.zeros(rater.size, dtype=np.int64) if aspect is None else as_codes(aspect, name="aspect")
    if not (score.shape == rater.shape == aspect.shape):
        raise CurationInputError("rater, score and aspect must have equal lengths")
    n_aspects = int(aspect.max()) + 1 if aspect.size else 1
    finite = np.isfinite(score)
    dropped_nan = int(score.size - finite.sum())
    group_codes, group = np.unique(rater[finite] * n_aspects + aspect[finite], return_inverse=True)
    values = score[finite]
    count = np.bincount(group, minlength=group_codes.size)
    mean = np.bincount(group, weights=values, minlength=group_codes.size) / np.maximum(count, 1)
    deviation = values - mean[group]
    variance = np.bincount(group, weights=deviation * deviation, minlength=group_codes.size) / np.maximum(count - 1, 1)
    std = np.sqrt(variance)
    sparse = count < min_scores_per_rater
    constant = ~sparse & (std <= 1e-12 * np.maximum(np.abs(mean), 1.0))
    usable = ~(sparse | constant)[group]
    z = np.full(score.size, np.nan)
    z[np.flatnonzero(finite)[usable]] = deviation[usable] / std[group][usable]

    messages = []
    if dropped_nan:
        messages.append(f"{dropped_nan} NaN score(s) dropped")
    if constant.any():
        messages.append(f"{int(constant.sum())} rater-aspect(s) gave one value throughout and were dropped")
    if sparse.any():
        messages.append(f"{int(sparse.sum())} rater-aspect(s) had under {min_scores_per_rater} scores and were dropped")
    if not usable.any():
        messages.append("no usable scores")
    return RaterZScores(z=z, dropped_nan=dropped_nan, dropped_constant_raters=int(constant.sum()),
                        dropped_sparse_raters=int(sparse.sum()), messages=tuple(messages))


@dataclass(frozen=True)
class OwnScoresVsChoices:
    """Per rater: of their pairwise choices where they also scored both images (and both the
    choice and the scores name a side), the share whose side their higher score agrees with."""

    n_sided: np.ndarray
    agreement: np.ndarray
    n_both_scored: int
    dropped_nan: int
    message: str | None = None


def own_scores_vs_choices(*, pair_rater, image_a, image_b, choice, score_rater, score_image, score,
                          n_raters: int, tie_tolerance: float = 0.0) -> OwnScoresVsChoices:
    """Does each rater's pairwise choice follow their own scores of the two images?

    Pairwise rows: `pair_rater`, the images `image_a` / `image_b` (codes shared with
    `score_image`) and `choice` (0 a, 1 b, 2 tie). Score rows: `score_rater`, `score_image`,
    `score`; a rater's last score of an image stands. Rows without the rater's score of both
    images do not count; NaN scores are dropped and counted (`score_pair_agreement`).
    """
    pair_rater, score_rater = as_codes(pair_rater, name="pair_rater"), as_codes(score_rater, name="score_rater")
    image_a, image_b = as_codes(image_a, name="image_a"), as_codes(image_b, name="image_b")
    score_image = as_codes(score_image, name="score_image")
    score = np.asarray(score, dtype=np.float64)
    if not (pair_rater.size == image_a.size == image_b.size == np.asarray(choice).size):
        raise CurationInputError("pair_rater, image_a, image_b and choice must have equal lengths")
    if not (score_rater.size == score_image.size == score.size):
        raise CurationInputError("score_rater, score_image and score must have equal lengths")
    n_images = int(max(image_a.max(initial=-1), image_b.max(initial=-1), score_image.max(initial=-1))) + 1
    key = score_rater * n_images + score_image
    # The last score of each (rater, image): unique over the reversed rows keeps the latest.
    keys, first_in_reversed = np.unique(key[::-1], return_index=True)
    values = score[::-1][first_in_reversed]

    def lookup(image):
        wanted = pair_rater * n_images + image
        position = np.clip(np.searchsorted(keys, wanted), 0, max(keys.size - 1, 0))
        found = (keys[position] == wanted) if keys.size else np.zeros(wanted.size, dtype=bool)
        return found, np.where(found, values[position] if keys.size else 0.0, np.nan)

    found_a, score_a = lookup(image_a)
    found_b, score_b = lookup(image_b)
    both = found_a & found_b
    checked = score_pair_agreement(verdict=np.asarray(choice)[both], score_a=score_a[both], score_b=score_b[both],
                                   tie_tolerance=tie_tolerance)
    rater = pair_rater[both]
    sided = (checked.score_order >= 0) & (checked.score_order != CHOICE_TIE) & (np.asarray(choice)[both] != CHOICE_TIE)
    agree = sided & (checked.score_order == np.asarray(choice)[both])
    n_sided = np.bincount(rater[sided], minlength=n_raters)
    with np.errstate(divide="ignore", invalid="ignore"):
        agreement = np.where(n_sided > 0, np.bincount(rater[agree], minlength=n_raters) / n_sided, np.nan)
    message = None
    if not both.any():
        message = "no rater scored both images of a pair they judged"
    elif not sided.any():
        message = "no pair where a rater's choice and scores both name a side"
    return OwnScoresVsChoices(n_sided=n_sided, agreement=agreement, n_both_scored=int(both.sum()),
                              dropped_nan=checked.dropped_nan, message=message)


@dataclass(frozen=True)
class Retest:
    """Per rater: how many times they rated content they had rated before, the mean absolute
    difference from their first value and the share identical to it; `correlation` is Pearson's
    r of first against later values over all raters (NaN under 3 pairs or without spread)."""

    n_pairs: np.ndarray
    mean_abs_difference: np.ndarray
    exact_share: np.ndarray
    correlation: float
    dropped_nan: int
    message: str | None = None


def retest_consistency(*, rater, item, value, n_raters: int) -> Retest:
    """Test-retest of each rater: every later value on an `item` (rows in time order) against
    their first value on it. NaN values are dropped and counted."""
    rater, item = as_codes(rater, name="rater"), as_codes(item, name="item")
    value = np.asarray(value, dtype=np.float64)
    if not (rater.size == item.size == value.size):
        raise CurationInputError("rater, item and value must have equal lengths")
    finite = np.isfinite(value)
    rater, item, value = rater[finite], item[finite], value[finite]
    n_items = int(item.max()) + 1 if item.size else 1
    key = rater * n_items + item
    order = np.argsort(key, kind="stable")  # stable: time order within a key
    key, rater, value = key[order], rater[order], value[order]
    first_of_key = np.ones(key.size, dtype=bool)
    first_of_key[1:] = key[1:] != key[:-1]
    first_value = value[np.maximum.accumulate(np.where(first_of_key, np.arange(key.size), 0))]
    later = ~first_of_key
    difference = np.abs(value[later] - first_value[later])
    n_pairs = np.bincount(rater[later], minlength=n_raters)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_abs = np.where(n_pairs > 0, np.bincount(rater[later], difference, n_raters) / n_pairs, np.nan)
        exact = np.where(n_pairs > 0, np.bincount(rater[later], difference == 0, n_raters) / n_pairs, np.nan)
    correlation = float("nan")
    x, y = first_value[later], value[later]
    if x.size >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConstantInputWarning)
            correlation = float(pearsonr(x, y)[0])
    message = None if later.any() else "no rater rated the same content twice"
    return Retest(n_pairs=n_pairs, mean_abs_difference=mean_abs, exact_share=exact, correlation=correlation,
                  dropped_nan=int((~finite).sum()), message=message)
