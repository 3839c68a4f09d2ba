"""The noisy Bradley-Terry fit with a left advantage per rater (no database)."""
import numpy as np
import pytest

from curation.stats.judgments import CurationInputError, PairwiseJudgments
from curation.stats.rater_bias import bradley_terry_left_advantage


def crowd(*, advantages, n_prompts=400, images_per_prompt=4, per_pair=1, seed=0, left_is_better=None):
    """Every pair of every prompt judged `per_pair` times by each rater; rater r adds
    `advantages[r]` log-odds to the left image. `left_is_better[r]` (a share) shows rater r the
    stronger image on the left that often instead of at random."""
    rng = np.random.default_rng(seed)
    strength = rng.normal(0.0, 1.0, n_prompts * images_per_prompt)
    i, k = np.triu_indices(images_per_prompt, 1)
    image_a = (np.arange(n_prompts)[:, None] * images_per_prompt + i).ravel()
    image_b = (np.arange(n_prompts)[:, None] * images_per_prompt + k).ravel()
    n_raters = len(advantages)
    unit = np.repeat(np.arange(image_a.size), n_raters * per_pair)
    rater = np.tile(np.repeat(np.arange(n_raters), per_pair), image_a.size)
    left_is_a = rng.random(unit.size) < 0.5
    for r, share in (left_is_better or {}).items():
        rows = rater == r
        a_better = strength[image_a[unit[rows]]] > strength[image_b[unit[rows]]]
        left_is_a[rows] = np.where(rng.random(rows.sum()) < share, a_better, ~a_better)
    side = np.where(left_is_a, 1.0, -1.0)
    margin = strength[image_a[unit]] - strength[image_b[unit]] + np.asarray(advantages)[rater] * side
    choice = np.where(rng.random(unit.size) < 1.0 / (1.0 + np.exp(-margin)), 0, 1)
    judgments = PairwiseJudgments.from_arrays(unit=unit, rater=rater, choice=choice, left_is_a=left_is_a)
    return judgments, image_a, image_b, np.repeat(np.arange(n_prompts), images_per_prompt)


def test_each_raters_left_advantage_is_recovered_within_its_standard_error_scale():
    truth = np.array([0.0, 0.0, 0.5, 1.5])
    judgments, image_a, image_b, prompt = crowd(advantages=truth, per_pair=3)

    fit = bradley_terry_left_advantage(judgments, image_a=image_a, image_b=image_b, prompt_of_image=prompt)

    assert fit.converged and fit.n_iterations < 15
    assert np.all(np.abs(fit.left_advantage - truth) < 0.1 + 0.1 * truth), fit.left_advantage
    assert np.all((fit.std_error > 0.02) & (fit.std_error < 0.08)), fit.std_error
    assert abs(fit.left_advantage[0]) < 3 * fit.std_error[0]  # an unbiased rater is not told otherwise


def test_a_rater_shown_the_better_image_on_the_left_has_a_high_left_share_but_no_advantage():
    judgments, image_a, image_b, prompt = crowd(advantages=[0.0, 0.0], per_pair=4, left_is_better={1: 0.85})
    side = judgments.presented_side()
    left_share = (side[judgments.rater == 1] == 0).mean()

    fit = bradley_terry_left_advantage(judgments, image_a=image_a, image_b=image_b, prompt_of_image=prompt)

    assert left_share > 0.6  # the plain left share blames the rater for the layout...
    assert abs(fit.left_advantage[1]) < 3 * fit.std_error[1]  # ...the fit takes the images' merit out


def test_ties_are_left_out_and_counted():
    judgments, image_a, image_b, prompt = crowd(advantages=[0.0, 1.0])
    choice = judgments.choice.copy()
    choice[::10] = 2
    with_ties = PairwiseJudgments.from_arrays(unit=judgments.unit, rater=judgments.rater, choice=choice,
                                              left_is_a=judgments.left_is_a)

    fit = bradley_terry_left_advantage(with_ties, image_a=image_a, image_b=image_b, prompt_of_image=prompt)

    assert fit.n_ties_left_out == choice[::10].size
    assert fit.n_sided.sum() == len(with_ties) - fit.n_ties_left_out
    assert any("tie judgment(s) left out" in m for m in fit.messages)


def test_a_disconnected_comparison_graph_is_fitted_and_named_with_its_components():
    # One prompt, four images, two pairs that share no image: (0, 1) and (2, 3).
    unit = np.repeat([0, 1], 20)
    judgments = PairwiseJudgments.from_arrays(unit=unit, rater=np.tile([0, 1], 20), choice=np.tile([0, 0, 1, 0], 10),
                                              left_is_a=np.tile([True, False], 20))

    fit = bradley_terry_left_advantage(judgments, image_a=[0, 2], image_b=[1, 3], prompt_of_image=[0, 0, 0, 0])

    assert fit.n_components == 2 and fit.n_split_prompts == 1
    assert "the comparison graph is disconnected: 2 components over 1 prompt(s)" in fit.messages[0]
    assert np.all(np.isfinite(fit.strength)) and np.all(np.isfinite(fit.left_advantage))


def test_only_ties_or_nothing_give_nan_with_a_message():
    ties = PairwiseJudgments.from_arrays(unit=[0, 0], rater=[0, 1], choice=[2, 2], left_is_a=[True, False])
    empty = PairwiseJudgments.from_arrays(unit=[], rater=[], choice=[], left_is_a=[], n_units=0)

    tied = bradley_terry_left_advantage(ties, image_a=[0], image_b=[1])
    nothing = bradley_terry_left_advantage(empty, image_a=[], image_b=[])

    assert np.all(np.isnan(tied.left_advantage)) and tied.messages == ("every judgment is a tie; no side to fit",)
    assert nothing.messages == ("no judgments",)


def test_a_nonpositive_prior_or_missing_sides_are_refused():
    judgments = PairwiseJudgments.from_arrays(unit=[0], rater=[0], choice=[0])
    with pytest.raises(CurationInputError, match="needs left_is_a"):
        bradley_terry_left_advantage(judgments, image_a=[0], image_b=[1])
    with pytest.raises(CurationInputError, match="l2 must be a positive number"):
        bradley_terry_left_advantage(PairwiseJudgments.from_arrays(unit=[0], rater=[0], choice=[0], left_is_a=[True]),
                                     image_a=[0], image_b=[1], l2=0)
