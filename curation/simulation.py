"""Simulated crowds with known truth, for choosing and checking curation rules.

A crowd is a composition of rater kinds (reliable, sloppy, random clickers, always-left clickers,
adversaries) answering pairwise units of varying difficulty, each unit judged by `overlap`
raters drawn at random. Sides are shown at random, so position bias is measurable. The truth is
a, b or (rarely) a tie; on a hard unit even a reliable rater is little better than a coin.

The defaults of `curation.rules.FilterRules` were chosen on some of these compositions and
checked on others (bench/curation_defaults_bench.py; docs/curation.md).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from curation.stats.judgments import CHOICE_A, CHOICE_B, CHOICE_TIE, PairwiseJudgments


@dataclass(frozen=True)
class CrowdComposition:
    name: str
    units: int = 2000
    overlap: int = 5
    reliable: int = 8  # right with probability reliable_accuracy on an easy unit
    reliable_accuracy: tuple[float, float] = (0.85, 0.92)
    sloppy: int = 0  # right with probability sloppy_accuracy on an easy unit
    sloppy_accuracy: tuple[float, float] = (0.62, 0.72)
    random: int = 0  # a, b or tie uniformly
    always_left: int = 0  # whichever image is on the left
    adversarial: int = 0  # the opposite side, deliberately
    hard_share: float = 0.25  # units on which everyone's skill shrinks towards a coin
    hard_skill: float = 0.3  # what is left of a rater's edge over a coin on a hard unit
    tie_share: float = 0.05  # units whose truth is a tie
    tie_press: float = 0.05  # how often an honest rater presses tie on a unit with a side

    @property
    def raters(self) -> int:
        return self.reliable + self.sloppy + self.random + self.always_left + self.adversarial

    @property
    def kinds(self) -> list[str]:
        """Each rater's kind, in rater order: reliable, sloppy, random, always_left, adversarial."""
        return (["reliable"] * self.reliable + ["sloppy"] * self.sloppy + ["random"] * self.random
                + ["always_left"] * self.always_left + ["adversarial"] * self.adversarial)

    def skill(self, kind: str, rng: random.Random) -> float:
        """A rater's chance of being right on an easy unit, drawn from their kind's range (0.5, a
        coin, for the kinds that do not look)."""
        bounds = {"reliable": self.reliable_accuracy, "sloppy": self.sloppy_accuracy}.get(kind)
        return rng.uniform(*bounds) if bounds else 0.5


@dataclass(frozen=True)
class SimulatedCrowd:
    composition: CrowdComposition
    seed: int
    judgments: PairwiseJudgments
    truth: np.ndarray  # CHOICE_A / CHOICE_B / CHOICE_TIE per unit
    hard: np.ndarray  # bool per unit
    kinds: list[str]  # per rater

    @property
    def unit_images(self) -> tuple[np.ndarray, np.ndarray]:
        """Image codes of each unit's a and b: every simulated unit compares two images of its own."""
        unit = np.arange(self.judgments.n_units)
        return 2 * unit, 2 * unit + 1

    def accuracy(self, verdict: np.ndarray) -> float:
        """Share of all units whose verdict is the truth (undecided units count as wrong)."""
        return float((np.asarray(verdict) == self.truth).mean())


COMPOSITIONS = {
    # The crowd: reliable and sloppy raters, random and always-left clickers, two adversaries.
    "mixed": CrowdComposition("mixed", reliable=6, sloppy=4, random=2, always_left=2, adversarial=2),
    "honest": CrowdComposition("honest", reliable=8, sloppy=4),
    "spammers": CrowdComposition("spammers", reliable=5, sloppy=2, random=5),
    "position_biased": CrowdComposition("position_biased", reliable=6, sloppy=2, always_left=5),
    "adversaries": CrowdComposition("adversaries", reliable=6, sloppy=3, adversarial=3),
    "hard_items": CrowdComposition("hard_items", reliable=6, sloppy=4, random=1, always_left=1, adversarial=1,
                                   hard_share=0.5),
    "small_mixed": CrowdComposition("small_mixed", units=400, overlap=3, reliable=3, sloppy=2, random=1,
                                    always_left=1, adversarial=1),
    "large_overlap": CrowdComposition("large_overlap", units=1000, overlap=7, reliable=6, sloppy=5, random=2,
                                      always_left=1, adversarial=1),
}


def simulate(composition: CrowdComposition, *, seed: int = 0) -> SimulatedCrowd:
    """Judgments of `composition` with its truth; the same seed gives the same crowd."""
    rng = np.random.default_rng(seed)
    c = composition
    kinds = c.kinds
    if c.overlap > len(kinds):
        raise ValueError(f"overlap {c.overlap} needs at least as many raters ({len(kinds)})")
    skill = np.zeros(len(kinds))
    skill[:c.reliable] = rng.uniform(*c.reliable_accuracy, c.reliable)
    skill[c.reliable:c.reliable + c.sloppy] = rng.uniform(*c.sloppy_accuracy, c.sloppy)
    truth = rng.choice([CHOICE_A, CHOICE_B, CHOICE_TIE], size=c.units,
                       p=[(1 - c.tie_share) / 2, (1 - c.tie_share) / 2, c.tie_share])
    hard = rng.random(c.units) < c.hard_share
    raters = np.argsort(rng.random((c.units, len(kinds))), axis=1)[:, :c.overlap]
    unit = np.repeat(np.arange(c.units), c.overlap)
    rater = raters.ravel()
    n = unit.size
    left_is_a = rng.random(n) < 0.5
    true = truth[unit]
    other_side = np.where(true == CHOICE_A, CHOICE_B, CHOICE_A)
    coin_side = np.where(rng.random(n) < 0.5, CHOICE_A, CHOICE_B)
    kind = np.array(kinds)[rater]

    # Honest raters: right with their skill (shrunk towards 0.5 on hard units), else the other
    # side; now and then a tie on a unit with a side; on a true tie, a tie or a coin.
    p_right = skill[rater]
    p_right = np.where(hard[unit], 0.5 + (p_right - 0.5) * c.hard_skill, p_right)
    honest = np.where(rng.random(n) < p_right, true, other_side)
    honest = np.where(rng.random(n) < c.tie_press, CHOICE_TIE, honest)
    honest = np.where(true == CHOICE_TIE, np.where(rng.random(n) < p_right, CHOICE_TIE, coin_side), honest)

    choice = honest.copy()
    choice[kind == "random"] = rng.integers(0, 3, int((kind == "random").sum()))
    left_side = np.where(left_is_a, CHOICE_A, CHOICE_B)
    choice[kind == "always_left"] = left_side[kind == "always_left"]
    adversary = kind == "adversarial"
    choice[adversary] = np.where(true[adversary] == CHOICE_TIE, coin_side[adversary], other_side[adversary])
    seconds = rng.lognormal(np.log(6.0), 0.4, n)
    seconds[(kind == "random") | (kind == "always_left")] /= 8
    judgments = PairwiseJudgments.from_arrays(unit=unit, rater=rater, choice=choice.astype(np.int64),
                                              left_is_a=left_is_a, seconds=seconds, n_units=c.units,
                                              n_raters=len(kinds))
    return SimulatedCrowd(composition=c, seed=seed, judgments=judgments, truth=truth, hard=hard, kinds=kinds)


def crowdkit_verdicts(crowd: SimulatedCrowd, model) -> np.ndarray:
    """A crowd-kit classification model (DawidSkene(), GLAD(), MajorityVote()...) run directly on
    every judgment, a / b / tie as three answers: its label per unit (-1 where it gives none).
    The reference the defaults are measured against."""
    import warnings

    import pandas as pd

    j = crowd.judgments
    frame = pd.DataFrame({"task": j.unit, "worker": j.rater, "label": j.choice})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # crowd-kit 1.4's pandas deprecations
        labels = model.fit_predict(frame)
    verdict = np.full(j.n_units, -1)
    verdict[labels.index.to_numpy()] = labels.to_numpy()
    return verdict


def rater_answer(composition: CrowdComposition, kind: str, *, skill: float, truth: int, left: int, hard: bool,
                 rng: random.Random) -> int:
    """One simulated rater's answer on one unit, one judgment at a time, with the behaviours
    `simulate` draws in bulk: an honest rater (reliable, sloppy) is right with `skill` (shrunk
    towards a coin on a `hard` unit), presses tie now and then, and on a true tie says tie or
    tosses a coin; a random clicker picks a, b or tie; an always-left clicker picks `left`; an
    adversary the wrong side. `truth` is CHOICE_A, CHOICE_B or CHOICE_TIE, `left` the side shown
    on the left (CHOICE_A or CHOICE_B); the answer is a choice code."""
    coin = rng.choice((CHOICE_A, CHOICE_B))
    other = CHOICE_B if truth == CHOICE_A else CHOICE_A
    if kind == "random":
        return rng.randrange(3)
    if kind == "always_left":
        return left
    if kind == "adversarial":
        return coin if truth == CHOICE_TIE else other
    p_right = 0.5 + (skill - 0.5) * composition.hard_skill if hard else skill
    if truth == CHOICE_TIE:
        return CHOICE_TIE if rng.random() < p_right else coin
    if rng.random() < composition.tie_press:
        return CHOICE_TIE
    return truth if rng.random() < p_right else other
