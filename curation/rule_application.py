"""What a filter run's rules do to pairwise judgments, without the database: which raters they
leave out (and why), and the consensus of the rest. The filter run (`curation.services`) and the
simulated crowds that chose the defaults (`curation.simulation`, bench/curation_defaults_bench.py)
call the same functions."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from curation.stats.aggregation import PairConsensus, majority_consensus, weighted_consensus
from curation.stats.agreement import ConsensusAgreement, consensus_agreement
from curation.stats.judgments import PairwiseJudgments
from curation.stats.reliability import GoldAccuracy, PositionBias, gold_accuracy, position_bias
from curation.report.numbers import p_value_text
from curation.rules import FilterRules


@dataclass(frozen=True)
class RaterChecks:
    bias: PositionBias
    agreement: ConsensusAgreement
    gold: GoldAccuracy


def rater_checks(judgments: PairwiseJudgments, rules: FilterRules, *, gold_answers: np.ndarray | None = None) -> RaterChecks:
    """The per-rater figures the exclusion rules read. `gold_answers[u]` is unit u's known
    answer or -1 (none known when not given)."""
    if gold_answers is None:
        gold_answers = np.full(judgments.n_units, -1, dtype=np.int64)
    return RaterChecks(bias=position_bias(judgments, alpha_level=rules.position_bias_p),
                       agreement=consensus_agreement(judgments), gold=gold_accuracy(judgments, gold=gold_answers))


def raters_excluded(judgments: PairwiseJudgments, rules: FilterRules, checks: RaterChecks) -> dict[int, str]:
    """Rater code -> why the rules leave that rater out (the first rule that does)."""
    bias, agreement, gold = checks.bias, checks.agreement, checks.gold
    excluded: dict[int, str] = {}
    for r in range(judgments.n_raters):
        if (rules.min_gold_accuracy is not None and gold.n_gold[r] >= rules.min_gold_answers
                and gold.accuracy[r] < rules.min_gold_accuracy):
            excluded[r] = (f"gold accuracy {gold.accuracy[r]:.2f} on {int(gold.n_gold[r])} gold units "
                           f"below {rules.min_gold_accuracy:.2f}")
        elif rules.exclude_position_biased and bool(bias.flagged[r]):
            excluded[r] = (f"position bias: chose the left image {bias.left_share[r]:.0%} of "
                           f"{int(bias.n_sided[r])} times ({p_value_text(bias.p_value[r])})")
        elif (rules.min_rater_agreement is not None and not math.isnan(agreement.agreement[r])
              and agreement.agreement[r] < rules.min_rater_agreement):
            excluded[r] = (f"agreement with the others' consensus {agreement.agreement[r]:.2f} "
                           f"below {rules.min_rater_agreement:.2f}")
    return excluded


def judgments_kept(judgments: PairwiseJudgments, excluded: dict[int, str]) -> tuple[PairwiseJudgments, np.ndarray]:
    """The judgments of the raters not excluded, and the row mask that picked them."""
    keep_rows = ~np.isin(judgments.rater, np.fromiter(excluded, dtype=np.int64, count=len(excluded)))
    kept = PairwiseJudgments.from_arrays(
        unit=judgments.unit[keep_rows], rater=judgments.rater[keep_rows], choice=judgments.choice[keep_rows],
        left_is_a=judgments.left_is_a[keep_rows], seconds=judgments.seconds[keep_rows], n_units=judgments.n_units,
        n_raters=judgments.n_raters)
    return kept, keep_rows


def rules_consensus(kept: PairwiseJudgments, rules: FilterRules, *, unit_images=None) -> PairConsensus:
    """The consensus per unit by the rules' aggregator and thresholds; `unit_images` (each unit's
    image a and b codes) is needed by the pairwise model, noisy_bt."""
    if rules.consensus == "majority":
        return majority_consensus(kept, min_judgments=rules.min_judgments, min_margin=rules.min_confidence)
    return weighted_consensus(kept, method=rules.consensus, ties=rules.ties, min_judgments=rules.min_judgments,
                              min_posterior=rules.min_confidence, tie_threshold=rules.tie_threshold, seed=rules.seed,
                              unit_images=unit_images)


def consensus_under_rules(judgments: PairwiseJudgments, rules: FilterRules,
                          *, gold_answers: np.ndarray | None = None, unit_images=None) -> PairConsensus:
    """Exclusions, then consensus: what a filter run with `rules` decides on these judgments."""
    checks = rater_checks(judgments, rules, gold_answers=gold_answers)
    kept, _ = judgments_kept(judgments, raters_excluded(judgments, rules, checks))
    return rules_consensus(kept, rules, unit_images=unit_images)
