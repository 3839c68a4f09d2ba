"""Adaptive collection (issue 16): how many human votes a pairwise unit gets, and which unit goes next.

Pure numpy, no Django, like `curation/stats/`: the refresh task and the assignment code turn
rows into these arrays and write the results back. Why the model and the order are what they
are, and what was measured: docs/adaptive.md.

The model. A unit's answer is a, b or tie; tie is a third answer, as the curation aggregator
treats it (FilterRules.ties = "model"). Each rater has a confusion matrix (truth x answer) from
the last Dawid-Skene fit over all human votes, shrunk towards a prior (Dirichlet pseudo-votes),
so that a rater with few votes, or one the fit has not seen yet, counts as a modestly reliable
rater. A unit's *evidence* is the sum of its votes' log-likelihoods under their raters'
matrices; its posterior is softmax(log class prior + evidence) and its *confidence* is the
posterior of its leading answer. Between two refreshes a new vote adds one row to the unit's
evidence (`vote_evidence`): constant work on submit. A refresh refits the matrices
(`rater_reliability`) and recomputes every unit's evidence.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

ANSWERS = 3  # a, b, tie: the choice codes of curation.stats.judgments
CLOSED = -1  # unit_priority of a unit that takes no more votes
CONFIDENCE_BANDS = 20  # level 2 of the priority: confidence in bands of 0.05
MACHINE_LEVELS = 4  # level 3: machine disagreement in four steps


class AdaptiveSettingsError(ValueError):
    """A project's adaptive settings are refused; `field` names the setting at fault."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


@dataclass(frozen=True)
class AdaptiveSettings:
    """A project's dynamic overlap: every unit gets at least `min_votes` human votes and at most
    `max_votes`; between the two it stops once its confidence reaches `confidence_target`. An
    optional `budget` caps the project's human judgments in all."""

    min_votes: int = 3
    max_votes: int = 7
    confidence_target: float = 0.95
    budget: int | None = None

    def validate(self, *, units: int | None = None) -> AdaptiveSettings:
        """Return self, or raise AdaptiveSettingsError naming the first setting at fault. The
        budget is checked against `min_votes` x `units` when the number of units is given."""
        for name in ("min_votes", "max_votes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise AdaptiveSettingsError(name, f"{name} must be a whole number of at least 1, got {value!r}")
        if self.min_votes > self.max_votes:
            raise AdaptiveSettingsError(
                "min_votes", f"min_votes ({self.min_votes}) must not exceed max_votes ({self.max_votes})")
        target = self.confidence_target
        if isinstance(target, bool) or not isinstance(target, (int, float, np.floating)) or not 0.5 < target < 1:
            raise AdaptiveSettingsError(
                "confidence_target", f"confidence_target must lie strictly between 0.5 and 1, got {target!r}")
        if self.budget is not None:
            budget = self.budget
            if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
                raise AdaptiveSettingsError("budget", f"budget must be a whole number of at least 1, got {budget!r}")
            if units is not None and budget < self.min_votes * units:
                raise AdaptiveSettingsError(
                    "budget", f"budget ({budget}) is below min_votes x units ({self.min_votes} x {units} = "
                              f"{self.min_votes * units}): some units could never reach their minimum")
        return self

    def as_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ReliabilityPrior:
    """What a rater is assumed to be before their votes say otherwise: right on a unit with a
    side with `side_accuracy`, pressing tie there with `tie_press`, recognising a true tie with
    `tie_recognition`; worth `strength` pseudo-votes per truth row of their confusion matrix.
    `class_prior` is a / b / tie before any vote, worth `class_strength` pseudo-units."""

    side_accuracy: float = 0.7
    tie_press: float = 0.05
    tie_recognition: float = 0.4
    strength: float = 6.0
    class_prior: tuple[float, float, float] = (0.475, 0.475, 0.05)
    class_strength: float = 20.0

    def confusion(self) -> np.ndarray:
        """The prior confusion matrix (truth x answer), rows summing to 1."""
        side, tie = self.side_accuracy * (1 - self.tie_press), self.tie_press
        wrong = 1 - side - tie
        half = (1 - self.tie_recognition) / 2
        return np.array([[side, wrong, tie], [wrong, side, tie], [half, half, self.tie_recognition]])


DEFAULT_PRIOR = ReliabilityPrior()


@dataclass(frozen=True)
class RaterReliability:
    """Per rater code, the log confusion matrix (truth x answer) of the last fit; raters with a
    code at or beyond `n_raters` (joined since) get `log_unknown_rater`."""

    log_confusion: np.ndarray  # (n_raters, 3, 3)
    log_class_prior: np.ndarray  # (3,)
    log_unknown_rater: np.ndarray  # (3, 3)

    @classmethod
    def from_prior(cls, n_raters: int = 0, prior: ReliabilityPrior = DEFAULT_PRIOR) -> RaterReliability:
        """Every rater as the prior says: the state before the first refresh."""
        log_unknown = np.log(prior.confusion())
        return cls(log_confusion=np.repeat(log_unknown[None], n_raters, axis=0),
                   log_class_prior=np.log(np.asarray(prior.class_prior, dtype=np.float64)),
                   log_unknown_rater=log_unknown)

    @property
    def n_raters(self) -> int:
        return int(self.log_confusion.shape[0])

    def vote_log_likelihood(self, rater, choice) -> np.ndarray:
        """(n, 3): log P(this answer | truth a, b, tie) for each vote, under its rater's matrix."""
        rater, choice = _codes(rater, "rater"), _codes(choice, "choice")
        if choice.size and choice.max() >= ANSWERS:
            raise ValueError("choice codes must be 0 (a), 1 (b) or 2 (tie)")
        known = rater < self.n_raters
        out = self.log_unknown_rater[:, choice].T.copy()
        if known.any():
            out[known] = self.log_confusion[rater[known], :, choice[known]]
        return out

    def accuracy(self) -> np.ndarray:
        """Each rater's estimated chance of answering the truth, weighted by the class prior."""
        prior = np.exp(self.log_class_prior)
        diagonal = np.exp(np.diagonal(self.log_confusion, axis1=1, axis2=2))
        return diagonal @ (prior / prior.sum())


def _codes(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must be a one-dimensional array of integer codes")
    array = array.astype(np.int64, copy=False)
    if array.size and array.min() < 0:
        raise ValueError(f"{name} holds negative codes")
    return array


def vote_evidence(reliability: RaterReliability, *, rater: int, choice: int) -> np.ndarray:
    """The (3,) log-likelihood one new vote adds to its unit's evidence (the update on submit)."""
    return reliability.vote_log_likelihood(np.array([rater]), np.array([choice]))[0]


def unit_evidence(*, unit, rater, choice, n_units: int, reliability: RaterReliability) -> np.ndarray:
    """(n_units, 3): the summed vote log-likelihoods of each unit; zeros for a unit without votes."""
    unit = _codes(unit, "unit")
    if unit.size and unit.max() >= n_units:
        raise ValueError(f"unit holds code {unit.max()} but n_units is {n_units}")
    loglik = reliability.vote_log_likelihood(rater, choice)
    if loglik.shape[0] != unit.size:
        raise ValueError("unit, rater and choice must have equal lengths")
    return np.stack([np.bincount(unit, weights=loglik[:, k], minlength=n_units) for k in range(ANSWERS)], axis=1)


def unit_posterior(evidence: np.ndarray, reliability: RaterReliability) -> np.ndarray:
    """(n_units, 3): P(truth = a, b, tie | the unit's votes), rows summing to 1."""
    logits = np.asarray(evidence, dtype=np.float64) + reliability.log_class_prior
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class UnitConfidence:
    """Per unit: the leading answer (0 a, 1 b, 2 tie), its posterior, and the posterior itself."""

    label: np.ndarray
    confidence: np.ndarray
    posterior: np.ndarray


def unit_confidence(evidence: np.ndarray, reliability: RaterReliability) -> UnitConfidence:
    """How sure the votes make each unit: the posterior of its leading answer. Equal evidence
    (no votes, or votes that cancel) leaves the class prior, whose leader is a."""
    posterior = unit_posterior(evidence, reliability)
    label = posterior.argmax(axis=1)
    return UnitConfidence(label=label, confidence=posterior[np.arange(label.size), label], posterior=posterior)


def rater_reliability(*, unit, rater, choice, n_units: int, n_raters: int, prior: ReliabilityPrior = DEFAULT_PRIOR,
                      iterations: int = 50, tolerance: float = 1e-4) -> RaterReliability:
    """Dawid-Skene (three answers) by expectation-maximisation, each rater's confusion matrix and
    the class prior smoothed by `prior` (maximum a posteriori): the scheduled refresh.

    Starts from the prior (the reliability-weighted vote), so it cannot swap labels on a crowd
    whose majority is honest. Stops after `iterations` or when no unit's posterior moves by
    more than `tolerance`."""
    unit, rater, choice = _codes(unit, "unit"), _codes(rater, "rater"), _codes(choice, "choice")
    if rater.size and rater.max() >= n_raters:
        raise ValueError(f"rater holds code {rater.max()} but n_raters is {n_raters}")
    reliability = RaterReliability.from_prior(n_raters, prior)
    if unit.size == 0:
        return reliability
    pseudo_votes = prior.strength * prior.confusion()
    pseudo_units = prior.class_strength * np.asarray(prior.class_prior)
    judged = np.bincount(unit, minlength=n_units) > 0
    cell = rater * ANSWERS + choice  # row of the (rater, answer) x truth table of log-likelihoods

    def posterior_under(reliability: RaterReliability) -> np.ndarray:
        table = reliability.log_confusion.transpose(0, 2, 1).reshape(-1, ANSWERS)
        loglik = table[cell]
        evidence = np.stack([np.bincount(unit, weights=loglik[:, k], minlength=n_units) for k in range(ANSWERS)],
                            axis=1)
        return unit_posterior(evidence, reliability)

    posterior = posterior_under(reliability)
    for _ in range(iterations):
        truth = posterior[unit]
        counts = np.stack([np.bincount(cell, weights=truth[:, k], minlength=n_raters * ANSWERS)
                           .reshape(n_raters, ANSWERS) for k in range(ANSWERS)], axis=1) + pseudo_votes
        classes = posterior[judged].sum(axis=0) + pseudo_units
        reliability = RaterReliability(log_confusion=np.log(counts / counts.sum(axis=2, keepdims=True)),
                                       log_class_prior=np.log(classes / classes.sum()),
                                       log_unknown_rater=reliability.log_unknown_rater)
        updated = posterior_under(reliability)
        moved = float(np.abs(updated - posterior).max())
        posterior = updated
        if moved < tolerance:
            break
    return reliability


def machine_disagreement(*, machine_counts, human_label, human_votes) -> np.ndarray:
    """Per unit in [0, 1]: how evenly the machine judges split between their two leading answers
    (0 unanimous, 1 an even split), or 1 where their leading answer differs from the humans'
    leading answer on a unit with human votes. 0 for units no machine judged.
    `machine_counts` is (n_units, 3) machine votes a / b / tie."""
    counts = np.asarray(machine_counts, dtype=np.float64)
    total = counts.sum(axis=1)
    ordered = np.sort(counts, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        split = np.where(total > 0, 1 - (ordered[:, -1] - ordered[:, -2]) / total, 0.0)
    against_humans = (total > 0) & (np.asarray(human_votes) > 0) & (counts.argmax(axis=1) != np.asarray(human_label))
    return np.where(against_humans, 1.0, split)


def unit_closed(*, votes, confidence, settings: AdaptiveSettings) -> np.ndarray:
    """Units that take no more votes: at the maximum, or at the minimum with the target reached."""
    votes, confidence = np.asarray(votes), np.asarray(confidence)
    return (votes >= settings.max_votes) | ((votes >= settings.min_votes) & (confidence >= settings.confidence_target))


def unit_priority(*, votes, confidence, settings: AdaptiveSettings, machine_disagreement=None,
                  in_cycle=None) -> np.ndarray:
    """A sortable int64 key per unit, larger = hand out sooner, CLOSED (-1) for units that take no
    more votes. The levels, most significant first: votes still missing to the minimum; the band
    of uncertainty (1 - confidence, in steps of 1 / CONFIDENCE_BANDS); machine disagreement in
    MACHINE_LEVELS steps; membership of a prompt whose consensus has a cycle. Units with equal
    keys are interchangeable to the policy, so the assignment scan may order them by prompt and
    keep a prompt's units together (ORDER BY priority DESC, prompt, id)."""
    votes = np.asarray(votes, dtype=np.int64)
    confidence = np.asarray(confidence, dtype=np.float64)
    missing = np.clip(settings.min_votes - votes, 0, settings.min_votes)
    band = np.clip(np.floor((1 - confidence) * CONFIDENCE_BANDS), 0, CONFIDENCE_BANDS - 1).astype(np.int64)
    machine = np.zeros(votes.shape, dtype=np.int64) if machine_disagreement is None else np.clip(
        np.floor(np.nan_to_num(np.asarray(machine_disagreement, dtype=np.float64)) * MACHINE_LEVELS),
        0, MACHINE_LEVELS - 1).astype(np.int64)
    cycle = np.zeros(votes.shape, dtype=np.int64) if in_cycle is None else np.asarray(in_cycle).astype(np.int64)
    key = ((missing * CONFIDENCE_BANDS + band) * MACHINE_LEVELS + machine) * 2 + cycle
    return np.where(unit_closed(votes=votes, confidence=confidence, settings=settings), CLOSED, key)


def vote_information(reliability: RaterReliability, rater_votes) -> float:
    """The evidence one vote adds for a unit's true side, on average: each rater's symmetrised
    Kullback-Leibler divergence between their answers to a true a and to a true b (rows of
    their confusion matrix), weighted by `rater_votes` (votes so far, standing for who votes
    next). For a rater right with p on two answers it is (2p - 1) log(p / (1 - p)); a random or
    one-side clicker adds nothing, an adversary the fit has seen through as much as the honest
    rater they mirror."""
    weights = np.asarray(rater_votes, dtype=np.float64)
    if weights.size != reliability.n_raters:
        raise ValueError(f"rater_votes needs one count per rater ({reliability.n_raters}), got {weights.size}")
    log_confusion = reliability.log_confusion
    if weights.sum() <= 0:  # nobody has voted: the prior rater stands for everyone
        log_confusion, weights = reliability.log_unknown_rater[None], np.ones(1)
    given_a, given_b = log_confusion[:, 0, :], log_confusion[:, 1, :]
    divergence = ((np.exp(given_a) - np.exp(given_b)) * (given_a - given_b)).sum(axis=1) / 2
    return float(weights @ divergence / weights.sum())


def _accuracy_carrying(information: float) -> float:
    """The accuracy p in [0.5, 1) of a rater whose vote carries `information`: (2p - 1) log(p / (1 - p))."""
    low, high = 0.5, 1 - 1e-9
    for _ in range(60):
        middle = (low + high) / 2
        if (2 * middle - 1) * np.log(middle / (1 - middle)) < information:
            low = middle
        else:
            high = middle
    return low


def expected_votes_left(*, votes, confidence, settings: AdaptiveSettings, information_per_vote: float) -> np.ndarray:
    """Per unit, the votes it is expected to take before it closes (0 for a closed unit): an
    estimate for the researcher's "judgments left", not a promise.

    Two answers (ties ignored) and one typical rater, whose accuracy p makes a vote carry
    `information_per_vote` (`vote_information`). A unit's leading log-odds L start at
    logit(confidence); each vote moves them by +-log(p / (1 - p)), up with the chance that the
    vote agrees given L; the unit closes past the minimum once |L| reaches logit(target), and
    at the maximum. The expectation is exact for that walk (dynamic programming over the votes
    left), so it counts that a contested unit's next votes usually settle it."""
    votes = np.asarray(votes, dtype=np.int64)
    confidence = np.clip(np.asarray(confidence, dtype=np.float64), 1e-9, 1 - 1e-9)
    p = _accuracy_carrying(max(float(information_per_vote), 0.0))
    step = np.log(p / (1 - p))
    threshold = np.log(settings.confidence_target / (1 - settings.confidence_target))
    most = settings.max_votes
    offsets = np.arange(-most, most + 1)
    log_odds = np.log(confidence / (1 - confidence))[:, None] + offsets[None, :] * step
    believed = 1 / (1 + np.exp(-log_odds))
    rise = believed * p + (1 - believed) * (1 - p)
    expected = np.zeros(log_odds.shape)  # with no vote left to give
    left = np.zeros(votes.size)
    room = most - votes
    for k in range(1, most + 1):  # k votes left to give, so most - k given
        closed = (most - k >= settings.min_votes) & (np.abs(log_odds) >= threshold)
        up = np.concatenate([expected[:, 1:], expected[:, -1:]], axis=1)
        down = np.concatenate([expected[:, :1], expected[:, :-1]], axis=1)
        expected = np.where(closed, 0.0, 1 + rise * up + (1 - rise) * down)
        left[room == k] = expected[room == k, most]
    return np.where(unit_closed(votes=votes, confidence=confidence, settings=settings), 0.0, left)


def estimated_accuracy(confidence) -> float:
    """The accuracy the posteriors promise over the given units: their mean confidence."""
    confidence = np.asarray(confidence, dtype=np.float64)
    return float(confidence.mean()) if confidence.size else float("nan")
