"""The adaptive collection policy (curation/adaptive.py) and its replay of simulated crowds
(curation/adaptive_simulation.py). Pure numpy: no database."""

import numpy as np
import pytest

from curation.adaptive import (
    CLOSED,
    AdaptiveSettings,
    AdaptiveSettingsError,
    RaterReliability,
    expected_votes_left,
    machine_disagreement,
    rater_reliability,
    unit_confidence,
    unit_evidence,
    unit_priority,
    vote_evidence,
    vote_information,
)
from curation.adaptive_simulation import collect, crowd_world, judgments_to_reach
from curation.simulation import CrowdComposition, simulate
from curation.stats.judgments import CHOICE_A, CHOICE_B, CHOICE_TIE

SMALL_CROWD = CrowdComposition("small_test_crowd", units=400, reliable=5, sloppy=3, random=1, always_left=1,
                               adversarial=1)
FIXED_5 = AdaptiveSettings(min_votes=5, max_votes=5, confidence_target=0.99)
ADAPTIVE = AdaptiveSettings(min_votes=2, max_votes=9, confidence_target=0.95)


def refused(settings: AdaptiveSettings, **kwargs) -> AdaptiveSettingsError:
    with pytest.raises(AdaptiveSettingsError) as caught:
        settings.validate(**kwargs)
    return caught.value


def confidence_of(votes: list[tuple[int, int]], reliability: RaterReliability) -> float:
    """Confidence of one unit judged by (rater, choice) votes."""
    rater = np.array([r for r, _ in votes], dtype=np.int64)
    choice = np.array([c for _, c in votes], dtype=np.int64)
    evidence = unit_evidence(unit=np.zeros(rater.size, dtype=np.int64), rater=rater, choice=choice, n_units=1,
                             reliability=reliability)
    return float(unit_confidence(evidence, reliability).confidence[0])


# Settings


def test_settings_refuse_min_votes_above_max_votes_naming_both():
    error = refused(AdaptiveSettings(min_votes=5, max_votes=3))
    assert error.field == "min_votes"
    assert "min_votes (5)" in str(error) and "max_votes (3)" in str(error)


@pytest.mark.parametrize("target", [0.5, 1.0, 0.3, 1.2, True])
def test_settings_refuse_confidence_target_outside_half_to_one(target):
    error = refused(AdaptiveSettings(confidence_target=target))
    assert error.field == "confidence_target"
    assert "confidence_target must lie strictly between 0.5 and 1" in str(error)


def test_settings_refuse_budget_below_min_votes_times_units():
    error = refused(AdaptiveSettings(min_votes=3, max_votes=7, budget=299), units=100)
    assert error.field == "budget"
    assert "budget (299) is below min_votes x units (3 x 100 = 300)" in str(error)


def test_settings_accept_budget_of_exactly_min_votes_times_units():
    settings = AdaptiveSettings(min_votes=3, max_votes=7, budget=300)
    assert settings.validate(units=100) is settings


@pytest.mark.parametrize(("field", "value"), [("min_votes", 0), ("max_votes", 2.5), ("min_votes", True),
                                              ("budget", 0)])
def test_settings_refuse_votes_and_budget_that_are_not_whole_positive_numbers(field, value):
    error = refused(AdaptiveSettings(**{field: value}))
    assert error.field == field
    assert f"{field} must be a whole number of at least 1" in str(error)


# Confidence


def test_confidence_grows_with_each_agreeing_vote():
    reliability = RaterReliability.from_prior(6)
    confidences = [confidence_of([(r, CHOICE_A) for r in range(n)], reliability) for n in range(1, 6)]
    assert all(later > earlier for earlier, later in zip(confidences, confidences[1:]))


def test_contested_unit_is_less_certain_than_agreeing_unit_with_as_many_votes():
    reliability = RaterReliability.from_prior(5)
    agreeing = confidence_of([(r, CHOICE_A) for r in range(5)], reliability)
    contested = confidence_of([(0, CHOICE_A), (1, CHOICE_A), (2, CHOICE_A), (3, CHOICE_B), (4, CHOICE_B)],
                              reliability)
    assert contested < agreeing


def test_tie_votes_make_tie_the_leading_answer():
    reliability = RaterReliability.from_prior(4)
    evidence = unit_evidence(unit=np.zeros(4, dtype=np.int64), rater=np.arange(4), choice=np.full(4, CHOICE_TIE),
                             n_units=1, reliability=reliability)
    assert unit_confidence(evidence, reliability).label[0] == CHOICE_TIE


def test_fitted_reliability_weighs_a_reliable_raters_vote_above_a_random_clickers():
    crowd = simulate(CrowdComposition("fit", units=600, reliable=4, random=2), seed=3)
    j = crowd.judgments
    reliability = rater_reliability(unit=j.unit, rater=j.rater, choice=j.choice, n_units=j.n_units,
                                    n_raters=j.n_raters)
    reliable, clicker = crowd.kinds.index("reliable"), crowd.kinds.index("random")
    assert confidence_of([(reliable, CHOICE_A)], reliability) > confidence_of([(clicker, CHOICE_A)], reliability)
    assert reliability.accuracy()[reliable] > reliability.accuracy()[clicker]


def test_a_rater_the_fit_has_not_seen_gets_the_prior():
    prior_only = RaterReliability.from_prior(0)
    fitted = rater_reliability(unit=np.array([0, 0, 1]), rater=np.array([0, 1, 0]), choice=np.array([0, 0, 1]),
                               n_units=2, n_raters=2)
    newcomer = fitted.vote_log_likelihood(np.array([7]), np.array([CHOICE_B]))
    assert np.allclose(newcomer, prior_only.vote_log_likelihood(np.array([0]), np.array([CHOICE_B])))


def test_votes_added_one_at_a_time_give_the_bulk_evidence():
    crowd = simulate(SMALL_CROWD, seed=5)
    j = crowd.judgments
    reliability = rater_reliability(unit=j.unit, rater=j.rater, choice=j.choice, n_units=j.n_units,
                                    n_raters=j.n_raters)
    incremental = np.zeros((j.n_units, 3))
    for unit, rater, choice in zip(j.unit[:300], j.rater[:300], j.choice[:300]):
        incremental[unit] += vote_evidence(reliability, rater=int(rater), choice=int(choice))
    bulk = unit_evidence(unit=j.unit[:300], rater=j.rater[:300], choice=j.choice[:300], n_units=j.n_units,
                         reliability=reliability)
    assert np.allclose(incremental, bulk)


# Priority


def test_priority_follows_the_four_levels_in_order():
    settings = AdaptiveSettings(min_votes=3, max_votes=9, confidence_target=0.95)
    # One unit per level, each outranking the next only by its own level:
    units = {
        "below_minimum": dict(votes=2, confidence=0.94, machine=0.0, cycle=False),
        "least_certain": dict(votes=3, confidence=0.55, machine=0.0, cycle=False),
        "machines_disagree": dict(votes=3, confidence=0.80, machine=1.0, cycle=False),
        "in_a_cycle": dict(votes=3, confidence=0.80, machine=0.0, cycle=True),
        "none_of_these": dict(votes=3, confidence=0.80, machine=0.0, cycle=False),
    }
    priority = unit_priority(votes=[u["votes"] for u in units.values()],
                             confidence=[u["confidence"] for u in units.values()], settings=settings,
                             machine_disagreement=[u["machine"] for u in units.values()],
                             in_cycle=[u["cycle"] for u in units.values()])
    assert np.all(np.diff(priority) < 0), dict(zip(units, priority.tolist()))


def test_priority_serves_fewer_votes_first_below_the_minimum():
    settings = AdaptiveSettings(min_votes=3, max_votes=9, confidence_target=0.95)
    priority = unit_priority(votes=[0, 1, 2], confidence=[0.475, 0.9, 0.5], settings=settings)
    assert priority[0] > priority[1] > priority[2]


def test_priority_closes_units_at_the_maximum_or_at_the_target_past_the_minimum():
    settings = AdaptiveSettings(min_votes=3, max_votes=7, confidence_target=0.95)
    priority = unit_priority(votes=[7, 3, 2, 6], confidence=[0.6, 0.96, 0.99, 0.94], settings=settings)
    assert priority.tolist()[:2] == [CLOSED, CLOSED]
    assert priority[2] > CLOSED and priority[3] > CLOSED  # below the minimum / below the target


def test_machine_disagreement_measures_their_split_and_their_dissent_from_humans():
    disagreement = machine_disagreement(
        machine_counts=[[3, 0, 0], [2, 2, 0], [3, 0, 0], [0, 0, 0]],
        human_label=[CHOICE_A, CHOICE_A, CHOICE_B, CHOICE_A], human_votes=[2, 2, 2, 2])
    assert disagreement.tolist() == [0.0, 1.0, 1.0, 0.0]


# What the researcher view will show


def test_expected_votes_left_is_zero_for_closed_units_and_more_for_contested_ones():
    settings = AdaptiveSettings(min_votes=2, max_votes=9, confidence_target=0.95)
    left = expected_votes_left(votes=[9, 3, 3, 3], confidence=[0.6, 0.97, 0.9, 0.55], settings=settings,
                               information_per_vote=1.0)
    assert left[0] == 0 and left[1] == 0
    assert 0 < left[2] < left[3] <= settings.max_votes - 3


def test_expected_votes_left_shrinks_as_votes_carry_more_information():
    settings = AdaptiveSettings(min_votes=2, max_votes=9, confidence_target=0.95)
    weak, strong = (expected_votes_left(votes=[2], confidence=[0.7], settings=settings, information_per_vote=info)
                    for info in (0.3, 2.0))
    assert weak[0] > strong[0]
    uninformative = expected_votes_left(votes=[2], confidence=[0.7], settings=settings, information_per_vote=0.0)
    assert uninformative[0] == settings.max_votes - 2


def test_vote_information_counts_reliable_raters_and_not_random_clickers():
    crowd = simulate(CrowdComposition("information", units=600, reliable=4, random=2), seed=3)
    j = crowd.judgments
    reliability = rater_reliability(unit=j.unit, rater=j.rater, choice=j.choice, n_units=j.n_units,
                                    n_raters=j.n_raters)
    only = lambda kind: [1 if k == kind else 0 for k in crowd.kinds]  # noqa: E731
    assert vote_information(reliability, only("reliable")) > 5 * vote_information(reliability, only("random"))


# Replay of a simulated crowd


def test_replay_never_exceeds_max_votes_nor_gives_a_unit_twice_to_one_rater():
    world = crowd_world(SMALL_CROWD, seed=7)
    run = collect(world, ADAPTIVE, seed=7)
    assert run.votes_per_unit(world.n_units).max() <= ADAPTIVE.max_votes
    assert run.votes_per_unit(world.n_units).min() >= ADAPTIVE.min_votes
    pairs = run.unit * world.n_raters + run.rater
    assert np.unique(pairs).size == run.judgments


def test_replay_stops_at_the_budget():
    world = crowd_world(SMALL_CROWD, seed=7)
    settings = AdaptiveSettings(min_votes=2, max_votes=9, confidence_target=0.95, budget=3 * world.n_units)
    assert collect(world, settings, seed=7).judgments == settings.budget


def test_fixed_overlap_replay_gives_every_unit_exactly_its_overlap():
    world = crowd_world(SMALL_CROWD, seed=7)
    run = collect(world, FIXED_5, seed=7)
    assert set(run.votes_per_unit(world.n_units).tolist()) == {5}


def test_adaptive_reaches_fixed_overlap_5_accuracy_with_fewer_judgments_on_a_small_crowd():
    world = crowd_world(SMALL_CROWD, seed=11)
    checkpoints = range(world.n_units // 10, ADAPTIVE.max_votes * world.n_units + 1, world.n_units // 10)
    fixed = collect(world, FIXED_5, seed=11, checkpoints=checkpoints)
    adaptive = collect(world, ADAPTIVE, seed=11, checkpoints=checkpoints)
    reached = judgments_to_reach(adaptive.curve, fixed.curve[-1, 1])
    assert reached is not None
    assert reached < fixed.judgments
