"""A judge's pairwise verdict against the order of its own scores of the two images."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curation.stats.judgments import (
    CHOICE_A,
    CHOICE_B,
    CHOICE_TIE,
    CurationInputError,
    same_length,
    verdict_codes,
)


@dataclass(frozen=True)
class ScorePairAgreement:
    """A judge's pairwise verdicts against the order of its own scores for the two images.

    `agreement_sided` counts only rows where both the verdict and the score order name
    a side; `agreement_with_ties` counts every row with finite scores, a tie verdict
    agreeing only with equal scores. `score_order` is the per-row order the scores
    imply (CHOICE_A / CHOICE_B / CHOICE_TIE, -1 where a score is NaN).
    """

    agreement_sided: float
    n_sided: int
    agreement_with_ties: float
    n_rows: int
    dropped_nan: int
    score_order: np.ndarray
    message: str | None = None


def score_pair_agreement(*, verdict, score_a, score_b, tie_tolerance: float = 0.0) -> ScorePairAgreement:
    """Does each verdict follow the judge's own aspect scores for images a and b?

    Scores within `tie_tolerance` of each other count as equal (a tie). Rows with a
    NaN score are dropped and counted.
    """
    if not np.isfinite(tie_tolerance) or tie_tolerance < 0:
        raise CurationInputError(f"tie_tolerance must be a finite number >= 0, got {tie_tolerance}")
    verdict = verdict_codes(verdict)
    score_a = np.asarray(score_a, dtype=np.float64)
    score_b = np.asarray(score_b, dtype=np.float64)
    same_length(verdict=verdict, score_a=score_a, score_b=score_b)
    finite = np.isfinite(score_a) & np.isfinite(score_b)
    difference = score_a - score_b
    score_order = np.where(difference > tie_tolerance, CHOICE_A, CHOICE_B)
    score_order = np.where(np.abs(difference) <= tie_tolerance, CHOICE_TIE, score_order)
    score_order = np.where(finite, score_order, -1)

    agree = (score_order == verdict)[finite]
    sided = ((score_order != CHOICE_TIE) & (verdict != CHOICE_TIE))[finite]
    message = None
    if verdict.size == 0:
        message = "no judgments"
    elif not finite.any():
        message = "no row has two finite scores"
    elif not sided.any():
        message = "no row has a side in both the verdict and the scores; sided agreement is undefined"
    return ScorePairAgreement(
        agreement_sided=float(agree[sided].mean()) if sided.any() else float("nan"),
        n_sided=int(sided.sum()),
        agreement_with_ties=float(agree.mean()) if agree.size else float("nan"),
        n_rows=int(finite.sum()),
        dropped_nan=int(verdict.size - finite.sum()),
        score_order=score_order,
        message=message,
    )
