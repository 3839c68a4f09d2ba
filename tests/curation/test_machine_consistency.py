"""Machine-judge consistency against seeded simulated judges with known ground truth,
hand-computed small cases, and bad input. Pure numpy: no database."""

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from curation.stats.judgments import CHOICE_A, CHOICE_B, CHOICE_TIE, CurationInputError
from curation.stats.human_machine import human_machine_agreement
from curation.stats.score_pairs import score_pair_agreement
from curation.stats.strength import StrengthFlag, preference_strength
from curation.stats.swap import swap_agreement
from curation.stats.transitivity import transitivity

GOOD, NOISY, BIASED = 0, 1, 2
JUDGES = {
    # verdict noise (sd of the perceived quality gap), score noise, first-shown pick rate
    GOOD: dict(verdict_noise=0.2, score_noise=0.3, first_rate=0.0),
    NOISY: dict(verdict_noise=1.2, score_noise=1.2, first_rate=0.0),
    BIASED: dict(verdict_noise=0.2, score_noise=0.3, first_rate=0.8),
}
TIE_BAND = 0.25


def simulate_pairs(*, seed=11, n_pairs=1500):
    """Pairs with a known quality gap q_a - q_b: 40% a better, 40% b better (gap
    1.0..2.0), 20% true ties (gap 0). The human label is the truth, a coin flip on true
    ties; 5% of the sided labels are flipped (planted label errors)."""
    rng = np.random.default_rng(seed)
    truth = rng.choice([CHOICE_A, CHOICE_B, CHOICE_TIE], size=n_pairs, p=[0.4, 0.4, 0.2])
    magnitude = rng.uniform(1.0, 2.0, n_pairs)
    gap = np.select([truth == CHOICE_A, truth == CHOICE_B], [magnitude, -magnitude], 0.0)
    quality_b = rng.normal(0.0, 1.0, n_pairs)
    quality_a = quality_b + gap
    label = np.where(truth == CHOICE_TIE, rng.integers(0, 2, n_pairs), truth)
    flipped = (truth != CHOICE_TIE) & (rng.random(n_pairs) < 0.05)
    label = np.where(flipped, 1 - label, label)
    return rng, truth, gap, quality_a, quality_b, label, flipped


def judge_verdicts(rng, gap, shown_first_is_a, *, verdict_noise, first_rate, **_):
    """A judge perceives the gap with noise and calls a tie inside a band; a
    position-biased judge instead names the first-shown image with `first_rate`."""
    perceived = gap + rng.normal(0.0, verdict_noise, gap.size)
    honest = np.select([perceived > TIE_BAND, perceived < -TIE_BAND], [CHOICE_A, CHOICE_B], CHOICE_TIE)
    first = np.where(shown_first_is_a, CHOICE_A, CHOICE_B)
    return np.where(rng.random(gap.size) < first_rate, first, honest)


def judge_scores(rng, quality, judge, *, score_noise, **_):
    """Scores on the judge's own scale (offset and spread differ per judge)."""
    return 5.0 + 2.0 * judge + (1.0 + judge) * (quality + rng.normal(0.0, score_noise, quality.size))


@pytest.fixture(scope="module")
def simulated():
    rng, truth, gap, quality_a, quality_b, label, flipped = simulate_pairs()
    n = gap.size
    swaps = {}
    for judge, params in JUDGES.items():
        # Each pair asked twice, once per presentation order.
        unit = np.concatenate([np.arange(n), np.arange(n)])
        first_a = np.concatenate([np.ones(n, bool), np.zeros(n, bool)])
        verdict = judge_verdicts(rng, gap[unit], first_a, **params)
        swaps[judge] = (unit, first_a, verdict)
    return dict(truth=truth, gap=gap, qa=quality_a, qb=quality_b, label=label, flipped=flipped, swaps=swaps)


def test_swap_check_ranks_position_biased_judge_lowest_and_flags_it(simulated):
    results = {
        judge: swap_agreement(unit=u, shown_first_is_a=f, verdict=v) for judge, (u, f, v) in simulated["swaps"].items()
    }

    assert results[GOOD].agreement > 0.9
    assert results[BIASED].agreement < 0.4
    assert results[BIASED].agreement < results[NOISY].agreement < results[GOOD].agreement
    assert results[BIASED].first_share > 0.75
    assert results[BIASED].p_value < 1e-3 and results[BIASED].flagged
    assert not results[GOOD].flagged and not results[NOISY].flagged
    assert results[GOOD].n_swapped == 1500 and results[GOOD].n_unpaired == 0


def test_swap_agreement_per_aspect_and_unpaired_units():
    # unit 0 aspect 0 survives, unit 0 aspect 1 flips, unit 1 is asked in one order only.
    result = swap_agreement(
        unit=[0, 0, 0, 0, 1],
        shown_first_is_a=np.array([True, False, True, False, True]),
        verdict=[CHOICE_A, CHOICE_A, CHOICE_A, CHOICE_B, CHOICE_B],
        aspect=[0, 0, 1, 1, 0],
    )

    assert result.agreement == 0.5
    assert result.n_swapped == 2 and result.n_unpaired == 1
    np.testing.assert_array_equal(result.per_aspect, [1.0, 0.0])
    # first shown picked: rows 0, 2 (a shown first, a chosen) and 3 (b first, b chosen).
    assert result.first_share == pytest.approx(3 / 5)


def test_score_pair_agreement_small_case_by_hand():
    result = score_pair_agreement(
        verdict=[CHOICE_A, CHOICE_B, CHOICE_A, CHOICE_TIE, CHOICE_A, CHOICE_B],
        score_a=[5.0, 3.0, 2.0, 4.0, 4.0, np.nan],
        score_b=[1.0, 4.0, 3.0, 4.0, 4.0, 1.0],
    )

    # sided rows 0, 1, 2: two agree; with ties also row 3 (tie = equal) agrees, row 4 not.
    assert result.agreement_sided == pytest.approx(2 / 3) and result.n_sided == 3
    assert result.agreement_with_ties == pytest.approx(3 / 5) and result.n_rows == 5
    assert result.dropped_nan == 1
    np.testing.assert_array_equal(result.score_order, [0, 1, 1, 2, 2, -1])


def test_good_judge_verdicts_follow_its_scores(simulated):
    rng, qa, qb = np.random.default_rng(13), simulated["qa"], simulated["qb"]
    verdict = judge_verdicts(rng, qa - qb, True, **JUDGES[GOOD])
    good = score_pair_agreement(
        verdict=verdict,
        score_a=judge_scores(rng, qa, GOOD, **JUDGES[GOOD]),
        score_b=judge_scores(rng, qb, GOOD, **JUDGES[GOOD]),
    )
    noisy_verdict = judge_verdicts(rng, qa - qb, True, **JUDGES[NOISY])
    noisy = score_pair_agreement(
        verdict=noisy_verdict,
        score_a=judge_scores(rng, qa, NOISY, **JUDGES[NOISY]),
        score_b=judge_scores(rng, qb, NOISY, **JUDGES[NOISY]),
    )

    assert good.agreement_sided > 0.95
    assert noisy.agreement_sided < good.agreement_sided


def strength_inputs(simulated):
    """Rows (pair, judge, score_a, score_b, verdict): three scoring judges and one
    verdict-only judge (NaN scores)."""
    rng, gap, qa, qb = np.random.default_rng(14), simulated["gap"], simulated["qa"], simulated["qb"]
    n = gap.size
    pairs, judges, score_a, score_b, verdicts = [], [], [], [], []
    for judge, params in JUDGES.items():
        pairs.append(np.arange(n))
        judges.append(np.full(n, judge))
        score_a.append(judge_scores(rng, qa, judge, **params))
        score_b.append(judge_scores(rng, qb, judge, **params))
        verdicts.append(judge_verdicts(rng, gap, rng.random(n) < 0.5, **params))
    pairs.append(np.arange(n))
    judges.append(np.full(n, 3))
    score_a.append(np.full(n, np.nan))
    score_b.append(np.full(n, np.nan))
    verdicts.append(judge_verdicts(rng, gap, True, **JUDGES[GOOD]))
    return dict(
        pair=np.concatenate(pairs),
        judge=np.concatenate(judges),
        score_a=np.concatenate(score_a),
        score_b=np.concatenate(score_b),
        verdict=np.concatenate(verdicts),
    )


def test_preference_strength_flags_true_ties_and_planted_label_errors(simulated):
    rows = strength_inputs(simulated)
    result = preference_strength(**rows, chosen=simulated["label"])

    truth, flipped = simulated["truth"], simulated["flipped"]
    flagged = result.flag != StrengthFlag.CLEAR
    assert flagged[truth == CHOICE_TIE].mean() > 0.8
    assert (result.flag[flipped] == StrengthFlag.LIKELY_WRONG).mean() > 0.9
    # The 40% quota exceeds the 24% of ties and flipped labels, so some clean pairs are
    # flagged ambiguous; almost none is called likely wrong.
    assert (result.flag[(truth != CHOICE_TIE) & ~flipped] == StrengthFlag.LIKELY_WRONG).mean() < 0.02
    assert (result.flag == StrengthFlag.LIKELY_WRONG).sum() == 300
    assert (result.flag == StrengthFlag.AMBIGUOUS).sum() == 300
    assert np.all(result.n_judges == 4) and np.all(np.isfinite(result.std))


def test_preference_strength_is_deterministic_and_orders_equal_means_by_pair():
    # Three pairs with the same mean: the rank follows the pair code.
    result = preference_strength(
        pair=[2, 1, 0, 3],
        judge=[0, 0, 0, 0],
        verdict=[CHOICE_TIE] * 3 + [CHOICE_A],
        likely_wrong_pct=25,
        ambiguous_pct=50,
    )

    np.testing.assert_array_equal(result.rank, [0, 1, 2, 3])
    np.testing.assert_array_equal(
        result.flag, [StrengthFlag.LIKELY_WRONG, StrengthFlag.AMBIGUOUS, StrengthFlag.AMBIGUOUS, StrengthFlag.CLEAR]
    )
    assert "single judge" in " ".join(result.messages)


def test_preference_strength_z_normalises_each_judge():
    # Judge 1 scores on a 10x scale; z-normalised, both judges give the same differences.
    scores_a, scores_b = np.array([3.0, 1.0, 2.0]), np.array([1.0, 2.0, 2.0])
    result = preference_strength(
        pair=[0, 1, 2, 0, 1, 2],
        judge=[0, 0, 0, 1, 1, 1],
        score_a=np.concatenate([scores_a, 10 * scores_a]),
        score_b=np.concatenate([scores_b, 10 * scores_b]),
    )

    std = np.std(np.concatenate([scores_a, scores_b]), ddof=1)
    np.testing.assert_allclose(result.mean, (scores_a - scores_b) / std)
    np.testing.assert_allclose(result.std, 0.0, atol=1e-12)


@pytest.mark.parametrize(("likely_wrong_pct", "ambiguous_pct"), [(-1, 20), (20, 101), (60, 50), (float("nan"), 10)])
def test_preference_strength_rejects_percentiles_out_of_range(likely_wrong_pct, ambiguous_pct):
    with pytest.raises(CurationInputError, match="pct"):
        preference_strength(
            pair=[0], judge=[0], verdict=[0], likely_wrong_pct=likely_wrong_pct, ambiguous_pct=ambiguous_pct
        )


def test_transitivity_finds_planted_three_cycle_and_none_in_consistent_prompt():
    # Prompt 0: images 0 > 1 > 2 > 0. Prompt 1: 3 > 4 > 5 > 6, all six pairs compared;
    # the 3-vs-5 pair is judged twice with a net preference for 3, and one tie is ignored.
    prompt_of_image = [0, 0, 0, 1, 1, 1, 1]
    comparisons = [
        (0, 1, CHOICE_A), (1, 2, CHOICE_A), (0, 2, CHOICE_B),
        (3, 4, CHOICE_A), (4, 5, CHOICE_A), (5, 6, CHOICE_A),
        (3, 5, CHOICE_A), (5, 3, CHOICE_A), (3, 5, CHOICE_A),
        (3, 6, CHOICE_A), (6, 4, CHOICE_B), (4, 6, CHOICE_TIE),
    ]  # fmt: skip
    image_a, image_b, verdict = (np.array(column) for column in zip(*comparisons, strict=True))

    result = transitivity(image_a=image_a, image_b=image_b, verdict=verdict, prompt_of_image=prompt_of_image)

    np.testing.assert_array_equal(result.n_three_cycles, [1, 0])
    np.testing.assert_array_equal(result.has_cycle, [True, False])
    assert result.cycle_share == 0.5 and result.n_prompts_checked == 2


def test_transitivity_finds_a_longer_cycle_without_three_cycles():
    # 0 > 1 > 2 > 3 > 0 with the diagonals undecided: a 4-cycle, no 3-cycle.
    result = transitivity(
        image_a=[0, 1, 2, 3, 0, 1], image_b=[1, 2, 3, 0, 2, 3], verdict=[0, 0, 0, 0, -1, 2], prompt_of_image=[0] * 4
    )

    assert result.n_three_cycles[0] == 0 and result.has_cycle[0]


def test_human_machine_accuracy_and_wilson_interval_match_hand_computation():
    # Human consensus on 6 units: a, b, a, tie, undecided, b. Judge 0 is right on units
    # 0, 1 and 2 and says tie on unit 5: 3 correct of 4.
    human = [CHOICE_A, CHOICE_B, CHOICE_A, CHOICE_TIE, -1, CHOICE_B]
    result = human_machine_agreement(
        human_consensus=human, unit=[0, 1, 2, 3, 4, 5], verdict=[0, 1, 0, 0, 1, 2], judge=[0] * 6
    )

    n, p, z = 4, 0.75, 1.959963984540054
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert result.n_pairs[0] == 4 and result.n_correct[0] == 3 and result.n_machine_ties[0] == 1
    assert result.accuracy[0] == 0.75
    assert result.ci_low[0] == pytest.approx(centre - half) and result.ci_high[0] == pytest.approx(centre + half)
    assert result.ci_low[0] == pytest.approx(0.3006, abs=1e-4)


def test_plcc_and_srcc_equal_scipy_and_fewer_than_three_images_give_a_message():
    human_mean = np.array([1.0, 2.5, 2.0, 4.0, 3.0, np.nan])
    # Judge 0 scores images 0..5 (image 1 twice, averaged; image 5 has no human score);
    # judge 1 shares only two images with the humans.
    result = human_machine_agreement(
        human_mean_score=human_mean,
        score_image=[0, 1, 1, 2, 3, 4, 5, 0, 5, 1],
        score=[0.2, 0.5, 0.7, 0.9, 0.8, 0.4, 0.1, 0.3, 0.9, 0.6],
        score_judge=[0, 0, 0, 0, 0, 0, 0, 1, 1, 1],
    )

    machine = np.array([0.2, 0.6, 0.9, 0.8, 0.4])
    assert result.n_images[0] == 5
    assert result.plcc[0] == pytest.approx(pearsonr(machine, human_mean[:5]).statistic)
    assert result.srcc[0] == pytest.approx(spearmanr(machine, human_mean[:5]).statistic)
    assert result.n_images[1] == 2 and np.isnan(result.plcc[1]) and np.isnan(result.srcc[1])
    assert any("judge 1" in m and "at least 3" in m for m in result.messages)


def test_empty_inputs_give_messages_not_crashes():
    empty = np.array([], dtype=np.int64)
    swap = swap_agreement(unit=empty, shown_first_is_a=np.array([], dtype=bool), verdict=empty)
    scores = score_pair_agreement(verdict=empty, score_a=[], score_b=[])
    strength = preference_strength(pair=empty, judge=empty, verdict=empty)
    cycles = transitivity(image_a=empty, image_b=empty, verdict=empty, prompt_of_image=empty)
    human = human_machine_agreement(human_consensus=empty, unit=empty, verdict=empty)

    assert swap.message == "no judgments" and np.isnan(swap.agreement) and np.isnan(swap.p_value)
    assert scores.message == "no judgments" and np.isnan(scores.agreement_sided)
    assert "no judgments" in strength.messages and strength.mean.size == 0
    assert cycles.message == "no comparisons" and np.isnan(cycles.cycle_share)
    assert human.messages == ("no machine judgments",)


def test_all_ties_and_one_order_only_give_messages():
    swap = swap_agreement(unit=[0, 1], shown_first_is_a=np.array([True, True]), verdict=[CHOICE_TIE, CHOICE_TIE])
    assert "both orders" in swap.message and swap.n_unpaired == 2


@pytest.mark.parametrize(
    "call",
    [
        lambda: swap_agreement(unit=[0, 1], shown_first_is_a=np.array([True]), verdict=[0, 1]),
        lambda: swap_agreement(unit=[0], shown_first_is_a=[1], verdict=[0]),
        lambda: score_pair_agreement(verdict=[0, 1], score_a=[1.0], score_b=[1.0, 2.0]),
        lambda: preference_strength(pair=[0, 1], judge=[0], verdict=[0, 1]),
        lambda: preference_strength(pair=[0], judge=[0]),
        lambda: preference_strength(pair=[0], judge=[0], verdict=[0], chosen=[CHOICE_TIE]),
        lambda: transitivity(image_a=[0], image_b=[1], verdict=[0], prompt_of_image=[0, 1]),
        lambda: human_machine_agreement(human_consensus=[0], unit=[0, 1], verdict=[0, 1]),
        lambda: human_machine_agreement(human_mean_score=[1.0], score_image=[0, 1], score=[1.0]),
        lambda: human_machine_agreement(),
    ],
)
def test_structurally_broken_input_raises_a_clear_error(call):
    with pytest.raises(CurationInputError):
        call()


def test_nan_and_constant_machine_scores_give_messages_not_numbers():
    result = human_machine_agreement(
        human_mean_score=[1.0, 2.0, 3.0, 4.0],
        score_image=[0, 1, 2, 3, 0, 1, 2, 3],
        score=[np.nan, 0.5, 0.6, 0.7, 0.4, 0.4, 0.4, 0.4],
        score_judge=[0, 0, 0, 0, 1, 1, 1, 1],
    )

    assert result.n_images[0] == 3 and np.isfinite(result.plcc[0])
    assert np.isnan(result.plcc[1]) and any("judge 1" in m and "constant" in m for m in result.messages)


def test_preference_strength_drops_flat_judges_and_falls_back_to_verdicts():
    result = preference_strength(
        pair=[0, 1, 0, 1],
        judge=[0, 0, 1, 1],
        score_a=[2.0, 2.0, 1.0, 2.0],
        score_b=[2.0, 2.0, 3.0, 1.0],
        verdict=[0, 1, 0, 0],
    )

    # Judge 0 scored 2.0 throughout: its verdict margins (+1, -1) stand in for its scores.
    z = 1.0 / np.std([1.0, 2.0, 3.0, 1.0], ddof=1)
    np.testing.assert_allclose(result.mean, [(1.0 - 2 * z) / 2, (-1.0 + z) / 2])
    assert any("one score throughout" in m for m in result.messages)


def test_declaring_fewer_judges_than_coded_is_an_error():
    with pytest.raises(CurationInputError, match="declared"):
        human_machine_agreement(human_consensus=[0, 1], unit=[0, 1], verdict=[0, 1], judge=[0, 2], n_judges=2)
