"""A simulated crowd replayed through the adaptive policy, one judgment at a time, with known truth.

The world of a crowd composition (curation/simulation.py): each unit's truth and difficulty,
each rater's kind and skill, a few machine judges' verdicts per unit. Annotators arrive in
random order; each takes the unit with the largest `unit_priority` among those they have not
judged and that are not closed (ties to the lowest unit code, as the assignment scan breaks them
by prompt and id), and answers as their kind does (`simulation.rater_answer`). On submit the
unit's evidence takes the vote under the current reliabilities and its priority is recomputed;
every `refresh_every` judgments the reliabilities are refitted (the scheduled Dawid-Skene
refresh) and every unit rescored. Fixed overlap k is the same replay with min = max = k.

No Django; used by bench/adaptive_collection_bench.py and tests/curation/test_adaptive_policy.py.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from curation.adaptive import (
    CLOSED,
    AdaptiveSettings,
    RaterReliability,
    expected_votes_left,
    machine_disagreement,
    rater_reliability,
    vote_information,
    unit_confidence,
    unit_evidence,
    unit_priority,
)
from curation.simulation import CrowdComposition, rater_answer
from curation.stats.judgments import CHOICE_A, CHOICE_B, CHOICE_TIE


@dataclass(frozen=True)
class MachineJudges:
    """Machine judges of the simulated world: `count` per unit, each right with `easy_accuracy`
    (`hard_accuracy` on a hard unit, where humans struggle too); a coin on a true tie."""

    count: int = 3
    easy_accuracy: float = 0.8
    hard_accuracy: float = 0.58


@dataclass(frozen=True)
class CrowdWorld:
    composition: CrowdComposition
    truth: np.ndarray  # CHOICE_A / CHOICE_B / CHOICE_TIE per unit
    hard: np.ndarray  # bool per unit
    kinds: list[str]  # per rater
    skill: np.ndarray  # per rater
    machine_counts: np.ndarray  # (n_units, 3) machine votes a / b / tie

    @property
    def n_units(self) -> int:
        return int(self.truth.size)

    @property
    def n_raters(self) -> int:
        return len(self.kinds)


def crowd_world(composition: CrowdComposition, *, seed: int, machines: MachineJudges = MachineJudges()) -> CrowdWorld:
    """The truth, raters and machine verdicts of `composition`; the same seed gives the same world."""
    rng = np.random.default_rng(seed)
    c = composition
    truth = rng.choice([CHOICE_A, CHOICE_B, CHOICE_TIE], size=c.units,
                       p=[(1 - c.tie_share) / 2, (1 - c.tie_share) / 2, c.tie_share])
    hard = rng.random(c.units) < c.hard_share
    skills = random.Random(seed)
    skill = np.array([c.skill(kind, skills) for kind in c.kinds])
    accuracy = np.where(hard, machines.hard_accuracy, machines.easy_accuracy)[:, None]
    right = rng.random((c.units, machines.count)) < accuracy
    other = np.where(truth == CHOICE_A, CHOICE_B, CHOICE_A)[:, None]
    verdicts = np.where(right, truth[:, None], other)
    coin = np.where(rng.random((c.units, machines.count)) < 0.5, CHOICE_A, CHOICE_B)
    verdicts = np.where((truth == CHOICE_TIE)[:, None], coin, verdicts)
    counts = np.stack([(verdicts == k).sum(axis=1) for k in range(3)], axis=1)
    return CrowdWorld(composition=c, truth=truth, hard=hard, kinds=c.kinds, skill=skill, machine_counts=counts)


def dawid_skene_verdict(world: CrowdWorld, unit: np.ndarray, rater: np.ndarray, choice: np.ndarray) -> np.ndarray:
    """Final labels from every vote so far: the smoothed Dawid-Skene of curation.adaptive (-1
    for a unit without votes, which counts as wrong)."""
    reliability = rater_reliability(unit=unit, rater=rater, choice=choice, n_units=world.n_units,
                                    n_raters=world.n_raters)
    labels = unit_confidence(unit_evidence(unit=unit, rater=rater, choice=choice, n_units=world.n_units,
                                           reliability=reliability), reliability).label
    return np.where(np.bincount(unit, minlength=world.n_units) > 0, labels, -1)


@dataclass(frozen=True)
class CollectionRun:
    """The votes of one replay in the order they were made, and at each checkpoint the accuracy
    of the final labels (all units; a unit without votes counts as wrong) next to what the
    policy's own state would show a researcher: `curve` rows are [judgments, accuracy, estimated
    accuracy (mean confidence), expected judgments left (expected_votes_left, within the
    budget)]. `estimated_accuracy` is the mean confidence at the end."""

    settings: AdaptiveSettings
    unit: np.ndarray
    rater: np.ndarray
    choice: np.ndarray
    left_is_a: np.ndarray
    curve: np.ndarray
    estimated_accuracy: float
    refreshes: int

    @property
    def judgments(self) -> int:
        return int(self.unit.size)

    def votes_per_unit(self, n_units: int) -> np.ndarray:
        return np.bincount(self.unit, minlength=n_units)


class _Collection:
    """The mutable state of one replay: votes, evidence, confidence and priority per unit."""

    def __init__(self, world: CrowdWorld, settings: AdaptiveSettings):
        self.world, self.settings = world, settings
        self.unit: list[int] = []
        self.rater: list[int] = []
        self.choice: list[int] = []
        self.left_is_a: list[bool] = []
        self.judged = np.zeros((world.n_raters, world.n_units), dtype=bool)
        self.votes = np.zeros(world.n_units, dtype=np.int64)
        self.reliability = RaterReliability.from_prior(world.n_raters)
        self.evidence = np.zeros((world.n_units, 3))
        self.refreshes = 0
        self._rescore(slice(None))

    def _rescore(self, units) -> None:
        """Confidence, machine disagreement and priority of `units` (a slice or index array)."""
        scored = unit_confidence(self.evidence[units], self.reliability)
        if isinstance(units, slice):
            self.label, self.confidence = scored.label.copy(), scored.confidence.copy()
            self.priority = np.zeros(self.world.n_units, dtype=np.int64)
        else:
            self.label[units], self.confidence[units] = scored.label, scored.confidence
        disagreement = machine_disagreement(machine_counts=self.world.machine_counts[units],
                                            human_label=self.label[units], human_votes=self.votes[units])
        self.priority[units] = unit_priority(votes=self.votes[units], confidence=self.confidence[units],
                                             settings=self.settings, machine_disagreement=disagreement)

    def refresh(self) -> None:
        """The scheduled refresh: refit reliabilities on every vote, rescore every unit."""
        unit, rater, choice = (np.asarray(v, dtype=np.int64) for v in (self.unit, self.rater, self.choice))
        self.reliability = rater_reliability(unit=unit, rater=rater, choice=choice, n_units=self.world.n_units,
                                             n_raters=self.world.n_raters)
        self.evidence = unit_evidence(unit=unit, rater=rater, choice=choice, n_units=self.world.n_units,
                                      reliability=self.reliability)
        self._rescore(slice(None))
        self.refreshes += 1

    def next_unit(self, rater: int) -> int | None:
        """The unit `rater` is handed: the largest priority among open units they have not judged."""
        candidates = np.where(self.judged[rater], CLOSED, self.priority)
        unit = int(candidates.argmax())
        return unit if candidates[unit] != CLOSED else None

    def record(self, *, unit: int, rater: int, choice: int, left_is_a: bool) -> None:
        if self.judged[rater, unit] or self.priority[unit] == CLOSED:
            raise AssertionError(f"unit {unit} was handed to rater {rater} though it was closed or judged by them")
        self.unit.append(unit)
        self.rater.append(rater)
        self.choice.append(choice)
        self.left_is_a.append(left_is_a)
        self.judged[rater, unit] = True
        self.votes[unit] += 1
        self.evidence[unit] += self.reliability.log_confusion[rater, :, choice]
        self._rescore(np.array([unit]))

    def arrays(self):
        return (np.asarray(self.unit, dtype=np.int64), np.asarray(self.rater, dtype=np.int64),
                np.asarray(self.choice, dtype=np.int64), np.asarray(self.left_is_a, dtype=bool))


def collect(world: CrowdWorld, settings: AdaptiveSettings, *, seed: int, refresh_every: int = 500,
            checkpoints=(), verdict: Callable = dawid_skene_verdict) -> CollectionRun:
    """Replay `world`'s crowd through `settings` until the budget is spent or no rater can take
    an open unit. `checkpoints` are judgment counts at which the final labels (`verdict`, called
    with the world and the votes so far) are scored against the truth; the end is always one."""
    settings.validate(units=world.n_units)
    arrivals = random.Random(seed)
    state = _Collection(world, settings)
    budget = settings.budget if settings.budget is not None else settings.max_votes * world.n_units
    marks = sorted({int(c) for c in checkpoints if 0 < c <= budget})
    curve = []

    def score() -> None:
        unit, rater, choice, _ = state.arrays()
        information = vote_information(state.reliability, np.bincount(rater, minlength=world.n_raters))
        left = expected_votes_left(votes=state.votes, confidence=state.confidence, settings=settings,
                                   information_per_vote=information).sum()
        curve.append((unit.size, float((verdict(world, unit, rater, choice) == world.truth).mean()),
                      float(state.confidence.mean()), float(min(left, budget - unit.size))))

    active = list(range(world.n_raters))
    while len(state.unit) < budget:
        if not active:
            state.refresh()  # a refresh may reopen a unit whose confidence fell
            active = [r for r in range(world.n_raters) if state.next_unit(r) is not None]
            if not active:
                break
        rater = arrivals.choice(active)
        unit = state.next_unit(rater)
        if unit is None:
            active.remove(rater)
            continue
        left = arrivals.choice((CHOICE_A, CHOICE_B))
        answer = rater_answer(world.composition, world.kinds[rater], skill=float(world.skill[rater]),
                              truth=int(world.truth[unit]), left=left, hard=bool(world.hard[unit]), rng=arrivals)
        state.record(unit=unit, rater=rater, choice=answer, left_is_a=left == CHOICE_A)
        spent = len(state.unit)
        if spent % refresh_every == 0:
            state.refresh()
            active = list(range(world.n_raters))  # the refresh may have reopened units for anyone
        if marks and spent == marks[0]:
            marks.pop(0)
            score()
    if not curve or curve[-1][0] != len(state.unit):
        score()
    unit, rater, choice, left_is_a = state.arrays()
    return CollectionRun(settings=settings, unit=unit, rater=rater, choice=choice, left_is_a=left_is_a,
                         curve=np.array(curve, dtype=np.float64), estimated_accuracy=float(state.confidence.mean()),
                         refreshes=state.refreshes)


def accuracy_at(curve: np.ndarray, judgments: float) -> float:
    """The curve's accuracy at `judgments`, linear between checkpoints; a run that ended earlier
    keeps its final accuracy (it spent less)."""
    if judgments >= curve[-1, 0]:
        return float(curve[-1, 1])
    return float(np.interp(judgments, curve[:, 0], curve[:, 1]))


def judgments_to_reach(curve: np.ndarray, accuracy: float) -> int | None:
    """The first checkpoint's judgment count at which the curve reaches `accuracy`, or None if
    it never does. No interpolation: the figure errs against the curve by up to one checkpoint."""
    reached = np.flatnonzero(curve[:, 1] >= accuracy)
    return int(curve[reached[0], 0]) if reached.size else None
