"""Plain-array inputs shared by the curation computations.

Every computation in `curation.stats.agreement`, `curation.stats.aggregation` and
`curation.stats.reliability` reads these containers, never the database. A loader fills
them from one `COPY (SELECT ...) TO STDOUT` of judgment rows, mapping each unit,
rater, image and prompt id to a dense integer code (0..n-1) on the way; the codes are
the row numbers of the id lists the loader keeps to translate results back.

Structurally broken input (arrays of different lengths, negative or non-integer
codes, unknown choice codes) is a bug in the caller and raises `CurationInputError`.
Data that is merely degenerate (no judgments, one rater, all ties, NaN scores) is not
an error: the computations return a result whose `message` says why a figure is
undefined.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Pairwise choice codes, as stored per judgment (sides are the canonical a / b of the
# comparison, not the screen sides).
CHOICE_A = 0
CHOICE_B = 1
CHOICE_TIE = 2
CHOICE_NAMES = ("a", "b", "tie")

# Screen-side codes, derived from a choice and which image was on the left.
SIDE_LEFT = 0
SIDE_RIGHT = 1
SIDE_TIE = 2
SIDE_NAMES = ("left", "right", "tie")


class CurationInputError(ValueError):
    """The arrays handed to a curation computation are structurally invalid."""


def integer_array(values, *, name: str) -> np.ndarray:
    """Return `values` as a 1-d int64 array, or raise naming `name`."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise CurationInputError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise CurationInputError(f"{name} must hold integer codes, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def as_codes(values, *, name: str) -> np.ndarray:
    """Return `values` as a 1-d int64 array of non-negative codes, or raise."""
    array = integer_array(values, name=name)
    if array.size and array.min() < 0:
        raise CurationInputError(f"{name} holds negative codes")
    return array


def _code_count(codes: np.ndarray, declared: int | None, *, name: str) -> int:
    inferred = int(codes.max()) + 1 if codes.size else 0
    if declared is None:
        return inferred
    if declared < inferred:
        raise CurationInputError(f"{name} holds code {inferred - 1} but only {declared} were declared")
    return int(declared)


@dataclass(frozen=True)
class PairwiseJudgments:
    """Pairwise preference judgments, one row per judgment, for one task type and aspect.

    `unit` is the comparison code, `rater` the annotator code, `choice` one of
    CHOICE_A / CHOICE_B / CHOICE_TIE in the comparison's canonical order. `left_is_a`
    says whether image a was shown on the left (needed for position bias), `seconds`
    is the time the judgment took (NaN where unknown). Rows are expected in the order
    the rater made them when run lengths matter (`reliability.straight_lining`).
    """

    unit: np.ndarray
    rater: np.ndarray
    choice: np.ndarray
    left_is_a: np.ndarray | None = None
    seconds: np.ndarray | None = None
    n_units: int = 0
    n_raters: int = 0

    @classmethod
    def from_arrays(
        cls,
        *,
        unit,
        rater,
        choice,
        left_is_a=None,
        seconds=None,
        n_units: int | None = None,
        n_raters: int | None = None,
    ) -> "PairwiseJudgments":
        """Validate and wrap the arrays; `n_units` / `n_raters` default to max code + 1."""
        unit_codes = as_codes(unit, name="unit")
        rater_codes = as_codes(rater, name="rater")
        choice_codes = as_codes(choice, name="choice")
        n = unit_codes.size
        if rater_codes.size != n or choice_codes.size != n:
            raise CurationInputError(
                f"unit, rater and choice must have equal lengths, got {n}, {rater_codes.size}, {choice_codes.size}"
            )
        if n and choice_codes.max() > CHOICE_TIE:
            raise CurationInputError("choice codes must be 0 (a), 1 (b) or 2 (tie)")
        left = None
        if left_is_a is not None:
            left = np.asarray(left_is_a, dtype=bool)
            if left.shape != (n,):
                raise CurationInputError("left_is_a must have one entry per judgment")
        secs = None
        if seconds is not None:
            secs = np.asarray(seconds, dtype=np.float64)
            if secs.shape != (n,):
                raise CurationInputError("seconds must have one entry per judgment")
        return cls(
            unit=unit_codes,
            rater=rater_codes,
            choice=choice_codes,
            left_is_a=left,
            seconds=secs,
            n_units=_code_count(unit_codes, n_units, name="unit"),
            n_raters=_code_count(rater_codes, n_raters, name="rater"),
        )

    def __len__(self) -> int:
        return int(self.unit.size)

    def presented_side(self) -> np.ndarray:
        """Each judgment's answer as the screen side (SIDE_LEFT / SIDE_RIGHT / SIDE_TIE)."""
        if self.left_is_a is None:
            raise CurationInputError("presented_side needs left_is_a")
        chose_a = self.choice == CHOICE_A
        side = np.where(chose_a == self.left_is_a, SIDE_LEFT, SIDE_RIGHT)
        return np.where(self.choice == CHOICE_TIE, SIDE_TIE, side)

    def counts(self) -> np.ndarray:
        """Per-unit vote counts, shape (n_units, 3): columns a, b, tie."""
        return unit_category_counts(self.unit, self.choice, n_units=self.n_units, n_categories=3)


@dataclass(frozen=True)
class Ratings:
    """Generic unit x rater values for agreement: nominal codes or interval numbers.

    NaN values (interval) are dropped by the computations, which report how many.
    """

    unit: np.ndarray
    rater: np.ndarray
    value: np.ndarray

    @classmethod
    def from_arrays(cls, *, unit, rater, value) -> "Ratings":
        unit_codes = as_codes(unit, name="unit")
        rater_codes = as_codes(rater, name="rater")
        values = np.asarray(value)
        if values.ndim != 1 or values.size != unit_codes.size or rater_codes.size != unit_codes.size:
            raise CurationInputError("unit, rater and value must be one-dimensional and of equal length")
        return cls(unit=unit_codes, rater=rater_codes, value=values)

    @classmethod
    def from_pairwise(cls, judgments: PairwiseJudgments) -> "Ratings":
        """The pairwise choices as nominal ratings (a, b and tie are three categories)."""
        return cls(unit=judgments.unit, rater=judgments.rater, value=judgments.choice)


def unit_category_counts(unit: np.ndarray, category: np.ndarray, *, n_units: int, n_categories: int) -> np.ndarray:
    """Count matrix (n_units, n_categories) of how often each unit received each category."""
    flat = np.bincount(unit * n_categories + category, minlength=n_units * n_categories)
    return flat.reshape(n_units, n_categories)


def last_per_unit_rater(unit: np.ndarray, rater: np.ndarray) -> tuple[np.ndarray, int]:
    """Indices keeping each (unit, rater)'s last row, in original order, and how many were dropped.

    Agreement coefficients assume one value per rater and unit; when a rater judged a
    unit twice the later judgment (rows arrive in time order) stands for both.
    """
    if unit.size == 0:
        return np.arange(0), 0
    n_raters = int(rater.max()) + 1
    key = unit * n_raters + rater
    reversed_first = np.unique(key[::-1], return_index=True)[1]
    keep = np.sort(unit.size - 1 - reversed_first)
    return keep, int(unit.size - keep.size)


def verdict_codes(values, *, name: str = "verdict", allow_undecided: bool = False) -> np.ndarray:
    """`values` as int64 verdict codes (0 a, 1 b, 2 tie; -1 undecided where allowed), or raise."""
    array = integer_array(values, name=name)
    low = -1 if allow_undecided else 0
    if array.size and (array.min() < low or array.max() > CHOICE_TIE):
        allowed = "-1 (undecided), 0 (a), 1 (b) or 2 (tie)" if allow_undecided else "0 (a), 1 (b) or 2 (tie)"
        raise CurationInputError(f"{name} codes must be {allowed}")
    return array


def same_length(**arrays: np.ndarray) -> int:
    sizes = {name: array.shape[0] for name, array in arrays.items()}
    if len(set(sizes.values())) > 1:
        raise CurationInputError(f"arrays must have equal lengths, got {sizes}")
    return next(iter(sizes.values()))


def share_of(numerator, denominator) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.asarray(denominator) > 0, np.asarray(numerator) / np.asarray(denominator), np.nan)
