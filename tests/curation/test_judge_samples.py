"""Self-consistency of a machine judge over k samples of one query, and the majority that stands
for those samples elsewhere. Pure numpy: no database."""
import numpy as np
import pytest

from curation.stats.judge_samples import majority_of_samples, query_codes, self_consistency
from curation.stats.judgments import CHOICE_A, CHOICE_B, CHOICE_TIE, CurationInputError
from tests.curation.test_machine_consistency import GOOD, JUDGES, NOISY, judge_verdicts, simulate_pairs


def test_self_consistency_is_the_share_of_agreeing_sample_pairs_by_hand():
    # query 0: a, a, b (1 of 3 pairs agree); query 1: tie x3 (all agree); query 2: one sample.
    result = self_consistency(query=[0, 0, 0, 1, 1, 1, 2], verdict=[0, 0, 1, 2, 2, 2, 1])

    assert result.agreement == pytest.approx((1 / 3 + 1) / 2)
    assert result.all_agree_share == 0.5
    assert result.n_keys == 2 and result.n_single_sample == 1
    assert result.mean_samples == pytest.approx(7 / 3)
    assert np.isnan(result.per_key[2])


def test_self_consistency_separates_a_steady_judge_from_a_noisy_one():
    rng, _, gap, *_ = simulate_pairs()
    k = 5
    query = np.repeat(np.arange(gap.size), k)
    steady = self_consistency(query=query, verdict=judge_verdicts(rng, gap[query], True, **JUDGES[GOOD]))
    noisy = self_consistency(query=query, verdict=judge_verdicts(rng, gap[query], True, **JUDGES[NOISY]))

    assert steady.agreement > 0.85 > 0.75 > noisy.agreement
    assert steady.all_agree_share > noisy.all_agree_share
    assert steady.n_keys == gap.size and steady.mean_samples == k and steady.n_single_sample == 0


def test_a_coin_tossing_judge_agrees_with_itself_about_half_the_time():
    rng = np.random.default_rng(3)
    query = np.repeat(np.arange(4000), 4)

    result = self_consistency(query=query, verdict=rng.integers(0, 2, query.size))

    assert result.agreement == pytest.approx(0.5, abs=0.02)


def test_a_judge_asked_once_per_query_has_no_self_consistency():
    result = self_consistency(query=[0, 1, 2], verdict=[0, 1, 0])

    assert np.isnan(result.agreement) and result.n_keys == 0 and result.mean_samples == 1.0
    assert "asked once" in result.message


def test_orders_and_versions_are_separate_queries():
    codes = query_codes(judge=[0, 0, 0, 0, 1], version=[0, 0, 1, 0, 0], unit=[5, 5, 5, 5, 5],
                        left_is_a=[True, True, True, False, True])

    assert codes[0] == codes[1] and len(set(codes.tolist())) == 4


def test_the_majority_of_samples_stands_for_the_query_and_ties_go_to_the_earliest_sample():
    # query 0: b, a, a -> a; query 1: samples 0..2 give tie, b, a (all tied) -> sample 0's tie;
    # query 2: sample 1 (row 6) says b, sample 0 (row 7) says a, tied -> sample 0's a.
    rows, verdicts = majority_of_samples(query=[0, 0, 0, 1, 1, 1, 2, 2], sample=[0, 1, 2, 0, 1, 2, 1, 0],
                                         verdict=[1, 0, 0, 2, 1, 0, 1, 0])

    assert verdicts.tolist() == [CHOICE_A, CHOICE_TIE, CHOICE_A]
    assert rows.tolist() == [2, 5, 7]  # each query's last row, in the order they were made


def test_the_majority_keeps_the_order_queries_were_last_answered():
    rows, verdicts = majority_of_samples(query=[1, 0, 1, 0], sample=[0, 0, 1, 1], verdict=[0, 1, 0, 1])

    assert rows.tolist() == [2, 3] and verdicts.tolist() == [CHOICE_A, CHOICE_B]


def test_empty_and_broken_inputs():
    empty = np.array([], dtype=np.int64)
    assert self_consistency(query=empty, verdict=empty).message == "no verdicts"
    assert majority_of_samples(query=empty, sample=empty, verdict=empty)[0].size == 0
    with pytest.raises(CurationInputError):
        self_consistency(query=[0, 1], verdict=[0, 3])
    with pytest.raises(CurationInputError):
        majority_of_samples(query=[0, 1], sample=[0], verdict=[0, 1])
