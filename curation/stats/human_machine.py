"""Machines against humans: accuracy against the human consensus (Wilson interval), and PLCC / SRCC
of machine scores against mean human scores per image."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.stats import ConstantInputWarning, pearsonr, spearmanr
from statsmodels.stats.proportion import proportion_confint

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


@dataclass(frozen=True)
class HumanMachineAgreement:
    """Per judge code: pairwise accuracy against the human a / b consensus with a Wilson
    interval, and PLCC / SRCC (with p-values) of its image scores against mean human
    scores. NaN where undefined; `messages` say why."""

    n_pairs: np.ndarray
    n_correct: np.ndarray
    n_machine_ties: np.ndarray
    accuracy: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n_images: np.ndarray
    plcc: np.ndarray
    plcc_p: np.ndarray
    srcc: np.ndarray
    srcc_p: np.ndarray
    confidence: float
    messages: tuple[str, ...] = ()


def human_machine_agreement(
    *,
    human_consensus=None,
    unit=None,
    verdict=None,
    judge=None,
    human_mean_score=None,
    score_image=None,
    score=None,
    score_judge=None,
    n_judges: int | None = None,
    confidence: float = 0.95,
) -> HumanMachineAgreement:
    """Each machine judge against the humans, on what both judged.

    Pairwise part: `human_consensus[u]` is the human verdict of unit u (-1 undecided);
    rows `unit`, `verdict`, `judge` are machine verdicts. Only units with a human a / b
    consensus count; a machine tie there counts as wrong (and in `n_machine_ties`). A
    judge's repeated verdicts on a unit: the last stands.

    Score part: `human_mean_score[i]` is image i's mean human score (NaN where none,
    e.g. a column of `AspectScores.mean_z`); rows `score_image`, `score`, `score_judge`
    are machine scores, averaged per (judge, image). PLCC and SRCC need three or more
    shared images; below that they are NaN with a message.
    """
    if not 0.0 < confidence < 1.0:
        raise CurationInputError(f"confidence must lie in (0, 1), got {confidence}")
    has_pairs = human_consensus is not None or unit is not None or verdict is not None
    has_scores = human_mean_score is not None or score_image is not None or score is not None
    if not (has_pairs or has_scores):
        raise CurationInputError("give the pairwise inputs, the score inputs, or both")
    if has_pairs and (human_consensus is None or unit is None or verdict is None):
        raise CurationInputError("the pairwise part needs human_consensus, unit and verdict")
    if has_scores and (human_mean_score is None or score_image is None or score is None):
        raise CurationInputError("the score part needs human_mean_score, score_image and score")

    if not has_pairs:
        judge = None
    if has_pairs:
        human_consensus = verdict_codes(human_consensus, name="human_consensus", allow_undecided=True)
        unit = as_codes(unit, name="unit")
        verdict = verdict_codes(verdict)
        judge = np.zeros(unit.size, dtype=np.int64) if judge is None else as_codes(judge, name="judge")
        same_length(unit=unit, verdict=verdict, judge=judge)
        if unit.size and unit.max() >= human_consensus.size:
            raise CurationInputError("a machine verdict names a unit beyond human_consensus")
    if has_scores:
        human_mean_score = np.asarray(human_mean_score, dtype=np.float64)
        score_image = as_codes(score_image, name="score_image")
        score = np.asarray(score, dtype=np.float64)
        score_judge = (
            np.zeros(score_image.size, dtype=np.int64)
            if score_judge is None
            else as_codes(score_judge, name="score_judge")
        )
        same_length(score_image=score_image, score=score, score_judge=score_judge)
        if score_image.size and score_image.max() >= human_mean_score.size:
            raise CurationInputError("a machine score names an image beyond human_mean_score")

    seen = max((int(a.max()) + 1 for a in (judge, score_judge) if a is not None and a.size), default=0)
    if n_judges is not None and n_judges < seen:
        raise CurationInputError(f"a judge code is {seen - 1} but only {n_judges} judges were declared")
    n_judges = int(n_judges if n_judges is not None else seen)
    messages: list[str] = []
    pairwise = _pairwise_accuracy(human_consensus, unit, verdict, judge, n_judges, confidence, messages)
    correlation = _score_correlation(human_mean_score, score_image, score, score_judge, n_judges, messages)
    return HumanMachineAgreement(
        **pairwise,
        **correlation,
        confidence=confidence,
        messages=tuple(messages) if n_judges else ("no machine judgments",),
    )


def _pairwise_accuracy(human_consensus, unit, verdict, judge, n_judges, confidence, messages) -> dict:
    """Per judge: accuracy against the human a / b consensus and its Wilson interval."""
    if unit is None:
        unit = verdict = judge = np.zeros(0, dtype=np.int64)
        human_consensus = np.zeros(0, dtype=np.int64)
    keep, _ = last_per_unit_rater(unit, judge)
    unit, verdict, judge = unit[keep], verdict[keep], judge[keep]
    human = human_consensus[unit]
    shared = (human == CHOICE_A) | (human == CHOICE_B)
    n_pairs = np.bincount(judge[shared], minlength=n_judges)
    n_correct = np.bincount(judge[shared & (verdict == human)], minlength=n_judges)
    low, high = proportion_confint(n_correct, np.maximum(n_pairs, 1), alpha=1 - confidence, method="wilson")
    if human_consensus.size:
        for j in np.flatnonzero(n_pairs == 0):
            messages.append(f"judge {j}: no unit has both a human a / b consensus and its verdict")
    return dict(
        n_pairs=n_pairs,
        n_correct=n_correct,
        n_machine_ties=np.bincount(judge[shared & (verdict == CHOICE_TIE)], minlength=n_judges),
        accuracy=share_of(n_correct, n_pairs),
        ci_low=np.where(n_pairs > 0, low, np.nan),
        ci_high=np.where(n_pairs > 0, high, np.nan),
    )


def _score_correlation(human_mean_score, score_image, score, score_judge, n_judges, messages) -> dict:
    """Per judge: PLCC and SRCC of its mean score per image against the mean human score."""
    n_images = np.zeros(n_judges, dtype=np.int64)
    plcc, plcc_p, srcc, srcc_p = (np.full(n_judges, np.nan) for _ in range(4))
    if score is None:
        return dict(n_images=n_images, plcc=plcc, plcc_p=plcc_p, srcc=srcc, srcc_p=srcc_p)
    size = max(human_mean_score.size, 1)
    usable = np.isfinite(score)
    cells, inverse = np.unique(score_judge[usable] * size + score_image[usable], return_inverse=True)
    machine = np.bincount(inverse, weights=score[usable]) / np.bincount(inverse)
    cell_judge, cell_image = cells // size, cells % size
    shared = np.isfinite(human_mean_score[cell_image])
    for j in range(n_judges):
        rows = shared & (cell_judge == j)
        n_images[j] = int(rows.sum())
        if n_images[j] < 3:
            messages.append(f"judge {j}: {n_images[j]} shared image(s); PLCC and SRCC need at least 3")
            continue
        x, y = machine[rows], human_mean_score[cell_image[rows]]
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            messages.append(f"judge {j}: machine or human scores are constant; PLCC and SRCC are undefined")
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConstantInputWarning)
            plcc[j], plcc_p[j] = pearsonr(x, y)
            srcc[j], srcc_p[j] = spearmanr(x, y)
    return dict(n_images=n_images, plcc=plcc, plcc_p=plcc_p, srcc=srcc, srcc_p=srcc_p)
