"""How often every two judges (machine judges and the human consensus) give the same verdict on
the units both decided: the report's agreement matrix."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curation.stats.judgments import CurationInputError, as_codes, unit_category_counts

UNDECIDED = -1


def judge_unit_verdicts(*, unit, judge, verdict, n_units: int, n_judges: int) -> np.ndarray:
    """Each judge's verdict per unit, shape (n_judges, n_units): the plurality of its verdicts on
    the unit (a judge asked in both orders, or several times, has several), UNDECIDED where it
    gave none or its top verdicts are tied (a / b split between the two orders)."""
    unit, judge, verdict = as_codes(unit, name="unit"), as_codes(judge, name="judge"), as_codes(verdict, name="verdict")
    if not (unit.size == judge.size == verdict.size):
        raise CurationInputError("unit, judge and verdict must have equal lengths")
    counts = unit_category_counts(judge * n_units + unit, verdict, n_units=n_judges * n_units, n_categories=3)
    top = counts.max(axis=1)
    decided = (top > 0) & ((counts == top[:, None]).sum(axis=1) == 1)
    return np.where(decided, counts.argmax(axis=1), UNDECIDED).reshape(n_judges, n_units)


@dataclass(frozen=True)
class AgreementMatrix:
    """`agreement[i, j]`: share of the units both i and j decided on which their verdicts (a, b or
    tie) are equal, NaN where they share none; `shared[i, j]` how many units that is (the
    diagonal: the units i decided)."""

    agreement: np.ndarray
    shared: np.ndarray


def verdict_agreement_matrix(verdicts: np.ndarray) -> AgreementMatrix:
    """Pairwise agreement between the rows of `verdicts` (judges x units, UNDECIDED for none)."""
    verdicts = np.asarray(verdicts)
    if verdicts.ndim != 2:
        raise CurationInputError("verdicts must be a judges x units matrix")
    decided = (verdicts >= 0).astype(np.float64)
    same = sum((verdicts == v).astype(np.float64) @ (verdicts == v).T.astype(np.float64) for v in range(3))
    shared = decided @ decided.T
    with np.errstate(divide="ignore", invalid="ignore"):
        agreement = np.where(shared > 0, same / shared, np.nan)
    return AgreementMatrix(agreement=agreement, shared=shared.astype(np.int64))
