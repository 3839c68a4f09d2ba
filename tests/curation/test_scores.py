"""Checks on per-image judgments without the database: per-rater z-scores, a rater's scores
against their own choices, and test-retest."""
import numpy as np
import pytest

from curation.stats.judgments import CurationInputError
from curation.stats.scores import own_scores_vs_choices, rater_zscores, retest_consistency


def test_zscores_remove_each_raters_offset_and_spread():
    truth = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    rater = np.repeat([0, 1], 5)
    score = np.concatenate([truth, 10 + 3 * truth])  # rater 1: another offset and three times the spread

    result = rater_zscores(rater=rater, score=score)

    np.testing.assert_allclose(result.z[:5], result.z[5:])
    assert result.messages == ()


def test_nan_scores_sparse_and_constant_raters_are_dropped_and_counted():
    rater = np.array([0, 0, 0, 0, 1, 1, 1, 2])
    score = np.array([1.0, np.nan, 3.0, 5.0, 4.0, 4.0, 4.0, 2.0])

    result = rater_zscores(rater=rater, score=score)

    assert np.isnan(result.z[1]) and np.all(np.isfinite(result.z[[0, 2, 3]])) and np.all(np.isnan(result.z[4:]))
    assert (result.dropped_nan, result.dropped_constant_raters, result.dropped_sparse_raters) == (1, 1, 1)
    assert result.messages == ("1 NaN score(s) dropped", "1 rater-aspect(s) gave one value throughout and were dropped",
                               "1 rater-aspect(s) had under 3 scores and were dropped")


def test_a_rater_whose_choices_contradict_their_own_scores_agrees_with_themself_zero_times():
    # Both raters scored images 0..3 as 1..4; rater 0 picks the higher-scored image, rater 1 the lower.
    image_a, image_b = np.array([0, 0, 1, 2]), np.array([1, 3, 2, 3])
    higher_is_b = np.ones(4, dtype=np.int64)  # b always has the higher score here

    result = own_scores_vs_choices(
        pair_rater=np.repeat([0, 1], 4), image_a=np.tile(image_a, 2), image_b=np.tile(image_b, 2),
        choice=np.concatenate([higher_is_b, 1 - higher_is_b]), score_rater=np.repeat([0, 1], 4),
        score_image=np.tile([0, 1, 2, 3], 2), score=np.tile([1.0, 2.0, 3.0, 4.0], 2), n_raters=3)

    assert list(result.agreement[:2]) == [1.0, 0.0] and np.isnan(result.agreement[2])
    assert list(result.n_sided) == [4, 4, 0] and result.message is None


def test_choices_on_images_the_rater_did_not_score_are_not_counted():
    result = own_scores_vs_choices(pair_rater=[0], image_a=[0], image_b=[1], choice=[0], score_rater=[1, 1],
                                   score_image=[0, 1], score=[5.0, 1.0], n_raters=2)

    assert result.n_both_scored == 0 and result.message == "no rater scored both images of a pair they judged"


def test_retest_compares_every_later_rating_with_the_first():
    # rater 0 rates item 7 three times (5, 5, 8) and item 2 twice (3, 3); rater 1 rates once.
    result = retest_consistency(rater=[0, 0, 0, 0, 0, 1], item=[7, 2, 7, 2, 7, 7], value=[5, 3, 5, 3, 8, 1],
                                n_raters=2)

    assert list(result.n_pairs) == [3, 0]
    assert result.mean_abs_difference[0] == pytest.approx(1.0) and result.exact_share[0] == pytest.approx(2 / 3)
    assert np.isnan(result.mean_abs_difference[1]) and result.message is None


def test_retest_without_repeats_says_so_and_drops_nan():
    result = retest_consistency(rater=[0, 0], item=[1, 1], value=[4.0, np.nan], n_raters=1)

    assert result.dropped_nan == 1 and result.message == "no rater rated the same content twice"


def test_unequal_lengths_are_refused():
    with pytest.raises(CurationInputError, match="equal lengths"):
        rater_zscores(rater=[0, 1], score=[1.0])
