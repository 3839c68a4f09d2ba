"""The curation core against a seeded simulated crowd with known ground truth, against
published worked examples, and on degenerate input. Pure numpy: no database."""

import time

import evalica
import numpy as np
import pandas as pd
import pytest

from curation.stats.aggregation import (
    UNDECIDED,
    Reason,
    bradley_terry_strengths,
    majority_consensus,
    weighted_consensus,
    zscore_aspect_scores,
)
from curation.stats.agreement import (
    cohen_kappa_pairs,
    consensus_agreement,
    fleiss_kappa,
    krippendorff_alpha,
    krippendorff_alpha_bootstrap,
)
from curation.stats.judgments import (
    CHOICE_A,
    CHOICE_B,
    CHOICE_TIE,
    CurationInputError,
    PairwiseJudgments,
    Ratings,
)
from curation.stats.reliability import gold_accuracy, judgment_time, position_bias, straight_lining

RELIABLE = list(range(8))
RANDOM = [8, 9]
ALWAYS_LEFT = [10, 11]
ADVERSARIAL = [12]
UNRELIABLE = RANDOM + ALWAYS_LEFT + ADVERSARIAL


def simulate_crowd(*, seed=7, n_units=2000, overlap=5):
    """2,000 pairwise units (45% a, 45% b, 10% true ties), 13 annotators, 5 per unit.

    Reliable annotators are right with probability 0.85..0.90 (otherwise one of the two
    wrong answers); random clickers press a, b or tie uniformly; always-left ones press
    whichever image is on the left, which is randomised per judgment; the adversary
    answers the opposite side (a random side on true ties). Returns the truth per unit
    and the judgments, with a latency per judgment (clickers are fast).
    """
    rng = np.random.default_rng(seed)
    truth = rng.choice([CHOICE_A, CHOICE_B, CHOICE_TIE], size=n_units, p=[0.45, 0.45, 0.10])
    accuracy = np.linspace(0.85, 0.90, len(RELIABLE))
    n_raters = len(RELIABLE) + len(UNRELIABLE)
    raters = np.argsort(rng.random((n_units, n_raters)), axis=1)[:, :overlap]
    unit = np.repeat(np.arange(n_units), overlap)
    rater = raters.ravel()
    true_choice = truth[unit]
    n = unit.size
    left_is_a = rng.random(n) < 0.5
    wrong = (true_choice + rng.integers(1, 3, n)) % 3
    choice = np.empty(n, dtype=np.int64)
    seconds = rng.lognormal(np.log(6.0), 0.4, n)
    for r in range(n_raters):
        mine = rater == r
        k = int(mine.sum())
        if r in RELIABLE:
            choice[mine] = np.where(rng.random(k) < accuracy[r], true_choice[mine], wrong[mine])
        elif r in RANDOM:
            choice[mine] = rng.integers(0, 3, k)
            seconds[mine] = rng.lognormal(np.log(0.8), 0.3, k)
        elif r in ALWAYS_LEFT:
            choice[mine] = np.where(left_is_a[mine], CHOICE_A, CHOICE_B)
            seconds[mine] = rng.lognormal(np.log(0.5), 0.3, k)
        else:
            opposite = np.where(true_choice[mine] == CHOICE_A, CHOICE_B, CHOICE_A)
            choice[mine] = np.where(true_choice[mine] == CHOICE_TIE, rng.integers(0, 2, k), opposite)
    judgments = PairwiseJudgments.from_arrays(
        unit=unit, rater=rater, choice=choice, left_is_a=left_is_a, seconds=seconds, n_raters=n_raters
    )
    return truth, judgments


@pytest.fixture(scope="module")
def crowd():
    return simulate_crowd()


def krippendorff_2011_reliability_data():
    """Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C:
    4 observers x 12 units, values 1..5, blanks missing. Published: nominal alpha
    0.743, interval alpha 0.849."""
    nan = np.nan
    matrix = np.array(
        [
            [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
            [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
            [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
            [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
        ]
    )
    rater, unit = np.nonzero(~np.isnan(matrix))
    return matrix, Ratings.from_arrays(unit=unit, rater=rater, value=matrix[rater, unit])


# --- consensus ---------------------------------------------------------------------------


def test_weighted_consensus_recovers_truth_better_than_majority(crowd):
    truth, judgments = crowd
    majority = majority_consensus(judgments)
    weighted = weighted_consensus(judgments)
    majority_accuracy = float((majority.verdict == truth).mean())
    weighted_accuracy = float((weighted.verdict == truth).mean())
    report = f"majority {majority_accuracy:.3f}, Dawid-Skene {weighted_accuracy:.3f}"
    print(report)
    assert weighted_accuracy >= majority_accuracy + 0.03, report
    assert weighted_accuracy >= 0.90, report


def test_weighted_consensus_calls_ties_by_tie_share(crowd):
    truth, judgments = crowd
    weighted = weighted_consensus(judgments, ties="share", tie_threshold=0.5)
    called_tie = weighted.verdict == CHOICE_TIE
    share = weighted.counts[:, CHOICE_TIE] / weighted.counts.sum(axis=1)
    assert np.array_equal(called_tie, share > 0.5)
    recall = float(called_tie[truth == CHOICE_TIE].mean())
    assert recall > 0.5, f"tie recall {recall:.3f}"
    unit = int(np.flatnonzero(called_tie)[0])
    assert weighted.reason_text(unit).startswith("tie: tie share")


@pytest.mark.parametrize("method", ["glad", "mace"])
def test_other_crowd_kit_models_beat_majority_on_a_smaller_crowd(method):
    truth, judgments = simulate_crowd(seed=11, n_units=300)
    majority_accuracy = float((majority_consensus(judgments).verdict == truth).mean())
    weighted_accuracy = float((weighted_consensus(judgments, method=method, n_iter=30).verdict == truth).mean())
    assert weighted_accuracy > majority_accuracy, f"majority {majority_accuracy:.3f}, {method} {weighted_accuracy:.3f}"


def test_majority_marks_narrow_and_tied_units_undecided_with_reason():
    judgments = PairwiseJudgments.from_arrays(
        unit=[0, 0, 0, 0, 0, 1, 1, 1, 1, 2],
        rater=[0, 1, 2, 3, 4, 0, 1, 2, 3, 0],
        choice=[0, 0, 0, 1, 1, 0, 0, 1, 1, 0],
    )
    consensus = majority_consensus(judgments, min_judgments=2, min_margin=0.25)
    assert consensus.verdict.tolist() == [UNDECIDED, UNDECIDED, UNDECIDED]
    assert consensus.reason.tolist() == [Reason.NARROW_MARGIN, Reason.TIED_TOP, Reason.TOO_FEW]
    assert consensus.reason_text(0) == "undecided: margin 0.20 below 0.25 (3 a / 2 b / 0 tie)"
    assert consensus.reason_text(1) == "undecided: the top answers are tied (2 a / 2 b / 0 tie)"
    assert consensus.reason_text(2) == "undecided: 1 judgment(s), at least 2 needed"
    assert majority_consensus(judgments, min_margin=0.2).verdict[0] == CHOICE_A


# --- rater reliability ------------------------------------------------------------------


def test_unreliable_raters_have_the_lowest_agreement_with_consensus(crowd):
    _, judgments = crowd
    leave_one_out = consensus_agreement(judgments).agreement
    weighted = weighted_consensus(judgments).rater_agreement
    for name, agreement in [("leave-one-out", leave_one_out), ("weighted", weighted)]:
        lowest = set(np.argsort(agreement)[: len(UNRELIABLE)].tolist())
        assert lowest == set(UNRELIABLE), f"{name}: {np.round(agreement, 2)}"
        assert agreement[RELIABLE].min() > agreement[UNRELIABLE].max() + 0.2, np.round(agreement, 2)
    assert leave_one_out[ADVERSARIAL[0]] < 0.15


def test_position_bias_flags_always_left_raters_only(crowd):
    _, judgments = crowd
    bias = position_bias(judgments, alpha_level=0.001)
    assert np.all(bias.p_value[ALWAYS_LEFT] < 0.001), bias.p_value
    assert np.all(bias.left_share[ALWAYS_LEFT] == 1.0)
    assert np.all(bias.p_value[RELIABLE] >= 0.001), bias.p_value
    assert np.flatnonzero(bias.flagged).tolist() == ALWAYS_LEFT


def test_gold_accuracy_separates_reliable_from_unreliable(crowd):
    truth, judgments = crowd
    gold = np.full(truth.size, -1)
    gold[:300] = truth[:300]
    result = gold_accuracy(judgments, gold=gold)
    assert result.accuracy[RELIABLE].min() > 0.75, np.round(result.accuracy, 2)
    assert result.accuracy[UNRELIABLE].max() < 0.55, np.round(result.accuracy, 2)
    assert np.all((result.ci_low <= result.accuracy) & (result.accuracy <= result.ci_high))


def test_straight_lining_on_screen_sides_singles_out_always_left(crowd):
    _, judgments = crowd
    result = straight_lining(rater=judgments.rater, answer=judgments.presented_side(), n_raters=judgments.n_raters)
    assert np.all(result.top_share[ALWAYS_LEFT] == 1.0)
    assert np.all(result.longest_run[ALWAYS_LEFT] == result.n_judgments[ALWAYS_LEFT])
    assert result.top_share[RELIABLE].max() < 0.6, np.round(result.top_share, 2)


def test_straight_lining_counts_runs_in_time_order():
    result = straight_lining(rater=[0, 0, 0, 0, 1], answer=[1, 0, 1, 1, 2], order=[3, 0, 1, 2, 0])
    # Rater 0 in time order answers 0, 1, 1, 1.
    assert result.longest_run.tolist() == [3, 1]
    assert result.top_share.tolist() == [0.75, 1.0]
    assert result.mean_run.tolist() == [2.0, 1.0]


def test_median_time_per_rater_matches_numpy_and_drops_nan(crowd):
    _, judgments = crowd
    seconds = judgments.seconds.copy()
    seconds[:7] = np.nan
    timed = PairwiseJudgments.from_arrays(
        unit=judgments.unit, rater=judgments.rater, choice=judgments.choice, seconds=seconds
    )
    result = judgment_time(timed)
    assert result.dropped_nan == 7
    for r in range(timed.n_raters):
        mine = (timed.rater == r) & np.isfinite(seconds)
        assert result.median_seconds[r] == pytest.approx(np.median(seconds[mine]))
    assert result.median_seconds[RELIABLE].min() > 3 * result.median_seconds[RANDOM + ALWAYS_LEFT].max()


# --- agreement coefficients -------------------------------------------------------------


def test_alpha_matches_krippendorff_2011_worked_example():
    _, ratings = krippendorff_2011_reliability_data()
    nominal = krippendorff_alpha(ratings, level="nominal")
    interval = krippendorff_alpha(ratings, level="interval")
    assert nominal.alpha == pytest.approx(0.743, abs=5e-4)
    assert interval.alpha == pytest.approx(0.849, abs=5e-4)
    # Unit 12 has a single value: not pairable, left out.
    assert (nominal.n_units, nominal.n_values, nominal.dropped_single) == (11, 40, 1)


def test_alpha_matches_krippendorff_2011_binary_example_by_hand():
    # Krippendorff (2011) section A: two observers, ten units, binary values.
    # n_0 = 14, n_1 = 6, n = 20; four disagreeing units give o_01 + o_10 = 8, so
    # alpha = 1 - (n - 1) * 8 / (2 * 14 * 6) = 1 - 152 / 168 = 0.095.
    coder_a = [0, 1, 0, 0, 0, 0, 0, 0, 1, 0]
    coder_b = [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    ratings = Ratings.from_arrays(unit=list(range(10)) * 2, rater=[0] * 10 + [1] * 10, value=coder_a + coder_b)
    assert krippendorff_alpha(ratings).alpha == pytest.approx(1 - 152 / 168)


def test_alpha_agrees_with_evalica_on_the_simulated_crowd(crowd):
    _, judgments = crowd
    wide = np.full((judgments.n_raters, judgments.n_units), np.nan)
    wide[judgments.rater, judgments.unit] = judgments.choice
    expected = evalica.alpha(pd.DataFrame(wide), distance="nominal").alpha
    assert krippendorff_alpha(Ratings.from_pairwise(judgments)).alpha == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("level", ["nominal", "interval"])
def test_alpha_is_one_for_perfect_agreement(level):
    values = np.array([1, 3, 2, 5, 4, 1])
    ratings = Ratings.from_arrays(
        unit=np.tile(np.arange(6), 3), rater=np.repeat(np.arange(3), 6), value=np.tile(values, 3)
    )
    assert krippendorff_alpha(ratings, level=level).alpha == pytest.approx(1.0)


def test_kappas_agree_in_sign_with_alpha(crowd):
    _, judgments = crowd
    alpha = krippendorff_alpha(Ratings.from_pairwise(judgments)).alpha
    fleiss = fleiss_kappa(judgments).kappa
    cohen = cohen_kappa_pairs(judgments).mean
    assert alpha > 0 and fleiss > 0 and cohen > 0, (alpha, fleiss, cohen)
    # Two raters who always disagree: all three turn negative.
    opposed = PairwiseJudgments.from_arrays(
        unit=np.repeat(np.arange(40), 2), rater=np.tile([0, 1], 40), choice=np.tile([0, 1, 1, 0], 20)
    )
    values = (
        krippendorff_alpha(Ratings.from_pairwise(opposed)).alpha,
        fleiss_kappa(opposed).kappa,
        cohen_kappa_pairs(opposed).mean,
    )
    assert all(v < 0 for v in values), values


def test_bootstrap_interval_contains_alpha_and_is_deterministic(crowd):
    _, judgments = crowd
    ratings = Ratings.from_pairwise(judgments)
    first = krippendorff_alpha_bootstrap(ratings, n_resamples=500, seed=3)
    again = krippendorff_alpha_bootstrap(ratings, n_resamples=500, seed=3)
    other = krippendorff_alpha_bootstrap(ratings, n_resamples=500, seed=4)
    assert first.ci_low < first.alpha < first.ci_high
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)
    assert first.ci_high - first.ci_low < 0.1


def test_alpha_on_a_million_judgments_takes_seconds():
    rng = np.random.default_rng(0)
    n_units, per_unit = 100_000, 10
    truth = rng.integers(0, 3, n_units)
    unit = np.repeat(np.arange(n_units), per_unit)
    value = np.where(rng.random(unit.size) < 0.7, truth[unit], rng.integers(0, 3, unit.size))
    ratings = Ratings.from_arrays(unit=unit, rater=np.tile(np.arange(per_unit), n_units), value=value)
    started = time.perf_counter()
    result = krippendorff_alpha(ratings)
    elapsed = time.perf_counter() - started
    print(f"alpha over 1,000,000 judgments: {elapsed:.3f} s")
    # Each value matches the truth with probability 0.7 + 0.3/3, so alpha is near 0.49.
    assert result.alpha == pytest.approx(0.49, abs=0.01)
    assert elapsed < 5.0


# --- strengths and scores ---------------------------------------------------------------


def test_bradley_terry_recovers_image_order_within_each_prompt():
    rng = np.random.default_rng(5)
    n_prompts = 30
    quality = np.tile([1.5, 0.5, -0.5, -1.5], n_prompts)
    prompt_of_image = np.repeat(np.arange(n_prompts), 4)
    first, second = np.triu_indices(4, k=1)
    image_a = (np.arange(n_prompts)[:, None] * 4 + first).ravel()
    image_b = (np.arange(n_prompts)[:, None] * 4 + second).ravel()
    unit = np.repeat(np.arange(image_a.size), 6)
    p_a = 1 / (1 + np.exp(-(quality[image_a[unit]] - quality[image_b[unit]])))
    draw = rng.random(unit.size)
    choice = np.where(draw < 0.1, CHOICE_TIE, np.where(rng.random(unit.size) < p_a, CHOICE_A, CHOICE_B))
    judgments = PairwiseJudgments.from_arrays(unit=unit, rater=np.zeros_like(unit), choice=choice)
    strengths = bradley_terry_strengths(judgments, image_a=image_a, image_b=image_b, prompt_of_image=prompt_of_image)
    per_prompt = strengths.strength.reshape(n_prompts, 4)
    assert np.allclose(per_prompt.sum(axis=1), 0.0)
    mean_strength = per_prompt.mean(axis=0)
    assert np.all(np.diff(mean_strength) < 0), mean_strength
    assert strengths.messages == ()


def test_bradley_terry_stays_finite_for_a_perfect_winner_and_reports_gaps():
    # Prompt 0: image 0 beats 1 every time, images 2 and 3 only meet each other.
    # Prompt 1 (images 4, 5) has no judgments.
    judgments = PairwiseJudgments.from_arrays(
        unit=[0, 0, 0, 1, 1], rater=[0, 1, 2, 0, 1], choice=[0, 0, 0, 2, 1], n_units=3
    )
    strengths = bradley_terry_strengths(
        judgments, image_a=[0, 2, 4], image_b=[1, 3, 5], prompt_of_image=[0, 0, 0, 0, 1, 1]
    )
    assert np.all(np.isfinite(strengths.strength[:4]))
    assert strengths.strength[0] > strengths.strength[1]
    assert strengths.strength[3] > strengths.strength[2]
    assert np.all(np.isnan(strengths.strength[4:]))
    assert strengths.messages == (
        "1 prompt(s) have no judgments; their images have no strength",
        "1 prompt(s) have a disconnected comparison graph; strengths across its parts rest on the prior",
    )


def test_zscores_remove_rater_offsets_and_drop_nan_with_a_count():
    # Rater 1 scores every image exactly 2 points above rater 0; rater 2 straight-lines.
    base = np.array([1.0, 2.0, 4.0, 5.0])
    image = np.tile(np.arange(4), 3)
    rater = np.repeat([0, 1, 2], 4)
    score = np.concatenate([base, base + 2, [3.0, 3.0, 3.0, 3.0]])
    score_with_nan = np.append(score, np.nan)
    result = zscore_aspect_scores(image=np.append(image, 0), rater=np.append(rater, 0), score=score_with_nan)
    z = (base - base.mean()) / base.std(ddof=1)
    assert np.allclose(result.mean_z[:, 0], z)
    assert result.n_scores[:, 0].tolist() == [2, 2, 2, 2]
    assert (result.dropped_nan, result.dropped_constant_raters) == (1, 1)
    assert result.messages == (
        "1 NaN score(s) dropped",
        "1 rater-aspect(s) gave one value throughout and were dropped",
    )


# --- bad input ----------------------------------------------------------------------------


def test_no_judgments_give_messages_not_errors():
    empty = PairwiseJudgments.from_arrays(unit=[], rater=[], choice=[], left_is_a=[])
    assert krippendorff_alpha(Ratings.from_pairwise(empty)).message == "no judgments"
    assert krippendorff_alpha_bootstrap(Ratings.from_pairwise(empty)).message == "no judgments"
    assert fleiss_kappa(empty).message == "no unit has judgments from two or more raters"
    assert cohen_kappa_pairs(empty).message == "no rater pair shares 20 or more units with a defined kappa"
    assert consensus_agreement(empty).message == "no judgments"
    assert majority_consensus(empty).message == "no judgments"
    assert weighted_consensus(empty).message == "no judgments"
    assert position_bias(empty).message == "no judgment chose a side"


def test_one_rater_gives_messages_not_errors():
    alone = PairwiseJudgments.from_arrays(unit=[0, 1, 2, 3], rater=[0, 0, 0, 0], choice=[0, 1, 0, 2])
    alpha = krippendorff_alpha(Ratings.from_pairwise(alone))
    assert np.isnan(alpha.alpha)
    assert alpha.message == "no unit has values from two or more raters; alpha needs pairable values"
    assert fleiss_kappa(alone).message == "no unit has judgments from two or more raters"
    assert np.isnan(consensus_agreement(alone).agreement[0])
    weighted = weighted_consensus(alone)
    assert weighted.verdict.tolist() == [CHOICE_A, CHOICE_B, CHOICE_A, CHOICE_TIE]


def test_all_ties_give_messages_not_errors():
    ties = PairwiseJudgments.from_arrays(unit=[0, 0, 1, 1], rater=[0, 1, 0, 1], choice=[2, 2, 2, 2])
    alpha = krippendorff_alpha(Ratings.from_pairwise(ties))
    assert np.isnan(alpha.alpha)
    assert alpha.message == "all pairable values are equal; expected disagreement is zero and alpha is undefined"
    fleiss = fleiss_kappa(ties)
    assert np.isnan(fleiss.kappa)
    assert fleiss.message == "all judgments fall in one category; chance agreement is 1 and kappa is undefined"
    weighted = weighted_consensus(ties, ties="share")
    assert weighted.message == "every judgment is a tie; no side to weigh"
    assert weighted_consensus(ties).verdict.tolist() == [CHOICE_TIE, CHOICE_TIE]  # ties in the model
    assert weighted.verdict.tolist() == [CHOICE_TIE, CHOICE_TIE]
    assert majority_consensus(ties).verdict.tolist() == [CHOICE_TIE, CHOICE_TIE]


def test_nan_scores_are_dropped_with_a_count_in_alpha():
    _, ratings = krippendorff_2011_reliability_data()
    with_nan = Ratings.from_arrays(
        unit=np.append(ratings.unit, [0, 1]),
        rater=np.append(ratings.rater, [9, 9]),
        value=np.append(ratings.value, [np.nan, np.nan]),
    )
    result = krippendorff_alpha(with_nan, level="interval")
    assert result.dropped_nan == 2
    assert result.alpha == pytest.approx(krippendorff_alpha(ratings, level="interval").alpha)


def test_unit_with_a_single_judgment_is_left_out_and_counted():
    judgments = PairwiseJudgments.from_arrays(unit=[0, 0, 1, 1, 2], rater=[0, 1, 0, 1, 0], choice=[0, 0, 1, 0, 1])
    alpha = krippendorff_alpha(Ratings.from_pairwise(judgments))
    assert (alpha.n_units, alpha.dropped_single) == (2, 1)
    majority = majority_consensus(judgments, min_judgments=2)
    assert majority.reason[2] == Reason.TOO_FEW
    assert weighted_consensus(judgments, min_judgments=2).verdict[2] == UNDECIDED


def test_repeated_judgment_by_one_rater_counts_once_in_alpha():
    ratings = Ratings.from_arrays(unit=[0, 0, 0, 1, 1], rater=[0, 1, 1, 0, 1], value=[1, 0, 1, 0, 0])
    result = krippendorff_alpha(ratings)
    assert result.dropped_duplicates == 1
    assert result.alpha == pytest.approx(1.0)


def test_structurally_invalid_arrays_raise_a_clear_error():
    with pytest.raises(CurationInputError, match="equal lengths"):
        PairwiseJudgments.from_arrays(unit=[0, 1], rater=[0], choice=[0, 1])
    with pytest.raises(CurationInputError, match="choice codes"):
        PairwiseJudgments.from_arrays(unit=[0], rater=[0], choice=[3])
    with pytest.raises(CurationInputError, match="min_margin"):
        majority_consensus(PairwiseJudgments.from_arrays(unit=[0], rater=[0], choice=[0]), min_margin=1.5)
