"""Does a machine judge's verdict survive swapping which image it was shown first? And its share of
first-shown picks, with an exact binomial test."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

from curation.stats.judgments import (
    CHOICE_A,
    CHOICE_TIE,
    CurationInputError,
    as_codes,
    last_per_unit_rater,
    same_length,
    share_of,
    verdict_codes,
)


@dataclass(frozen=True)
class SwapAgreement:
    """Swap agreement of one judge, and its first-position bias.

    `agreement` is the share of units (per aspect: unit-aspect keys) asked in both
    orders whose canonical verdict was the same both times; `per_aspect` holds it per
    aspect code (NaN where an aspect has no swapped unit). `first_share` is the share of
    side verdicts (ties excluded) naming the image shown first, `p_value` the exact
    two-sided binomial test against 0.5, `flagged` p < `alpha_level`.
    """

    agreement: float
    n_swapped: int
    n_unpaired: int
    per_aspect: np.ndarray
    n_swapped_per_aspect: np.ndarray
    first_share: float
    n_sided: int
    p_value: float
    flagged: bool
    alpha_level: float
    message: str | None = None


def swap_agreement(*, unit, shown_first_is_a, verdict, aspect=None, alpha_level: float = 0.001) -> SwapAgreement:
    """Share of units whose verdict survives swapping the sides, and first-position bias.

    One row per query of one judge: the unit, whether image a was shown first, and the
    verdict in canonical a / b / tie terms. A unit (or unit-aspect, when `aspect` is
    given) counts when it was asked in both orders; if asked more than once in one
    order the last row stands. Units asked in one order only are counted in
    `n_unpaired`. The first-position test uses every side verdict, paired or not.
    """
    if not 0.0 < alpha_level < 1.0:
        raise CurationInputError(f"alpha_level must lie in (0, 1), got {alpha_level}")
    unit = as_codes(unit, name="unit")
    first_a = np.asarray(shown_first_is_a)
    if first_a.dtype != bool:
        raise CurationInputError(f"shown_first_is_a must be boolean, got dtype {first_a.dtype}")
    verdict = verdict_codes(verdict)
    aspect = np.zeros(unit.size, dtype=np.int64) if aspect is None else as_codes(aspect, name="aspect")
    n = same_length(unit=unit, shown_first_is_a=first_a, verdict=verdict, aspect=aspect)
    n_aspects = int(aspect.max()) + 1 if n else 1

    key = unit * n_aspects + aspect
    # One verdict per (key, order): the presentation order plays the rater in last_per_unit_rater.
    keep, _ = last_per_unit_rater(key, first_a.astype(np.int64))
    kept_key, kept_first, kept_verdict = key[keep], first_a[keep], verdict[keep]
    order = np.lexsort((kept_first, kept_key))
    kept_key, kept_first, kept_verdict = kept_key[order], kept_first[order], kept_verdict[order]
    # Sorted by key then order (False before True): a swapped key is two adjacent rows.
    both = np.flatnonzero((kept_key[1:] == kept_key[:-1]) & (kept_first[1:] != kept_first[:-1]))
    same = kept_verdict[both] == kept_verdict[both + 1]
    swapped_aspect = kept_key[both] % n_aspects
    n_swapped_per_aspect = np.bincount(swapped_aspect, minlength=n_aspects)
    per_aspect = share_of(np.bincount(swapped_aspect, weights=same, minlength=n_aspects), n_swapped_per_aspect)
    n_unpaired = int(np.unique(kept_key).size - both.size)

    sided = verdict != CHOICE_TIE
    picked_first = sided & ((verdict == CHOICE_A) == first_a)
    n_sided, n_first = int(sided.sum()), int(picked_first.sum())
    p_value = binomtest(n_first, n_sided, 0.5).pvalue if n_sided else float("nan")

    message = None
    if n == 0:
        message = "no judgments"
    elif both.size == 0:
        message = "no unit was asked in both orders; swap agreement is undefined"
    elif n_sided == 0:
        message = "every verdict is a tie; first-position share is undefined"
    return SwapAgreement(
        agreement=float(same.mean()) if both.size else float("nan"),
        n_swapped=int(both.size),
        n_unpaired=n_unpaired,
        per_aspect=per_aspect,
        n_swapped_per_aspect=n_swapped_per_aspect,
        first_share=n_first / n_sided if n_sided else float("nan"),
        n_sided=n_sided,
        p_value=float(p_value),
        flagged=bool(p_value < alpha_level),
        alpha_level=alpha_level,
        message=message,
    )
