"""A filter run's evaluation in three steps, each a function: which raters its rules leave out
(`raters_step`), the verdict of every unit (`unit_verdicts`), and the report (`run_summary`).
`filter_run_evaluate` reads the judgments and chains them; `curation.services` stores the result."""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from curation.image_files import missing_image_files
from curation.loading import ComparisonImages, ImageGraph, LoadedPairwise, comparison_images_load, pairwise_judgments_load
from curation.models import DropReason, FilterRun, UnitVerdict
from curation.report.judges import machine_judges_report
from curation.report.numbers import number
from curation.report.pairwise import (
    agreement_by_aspect,
    confidence_tradeoff,
    human_pairwise_by_aspect,
    position_bias_fit_summary,
    rater_table,
    strength_summary,
    transitivity_summary,
)
from curation.report.scores import aspect_score_summary, machine_score_summary, rater_consistency_summary, scores_load
from curation.rule_application import RaterChecks, judgments_kept, rater_checks, raters_excluded, rules_consensus
from curation.rules import FilterRules, consensus_description
from curation.stats.agreement import krippendorff_alpha_bootstrap
from curation.stats.aggregation import PairConsensus
from curation.stats.judgments import CHOICE_NAMES, CHOICE_TIE, PairwiseJudgments, Ratings
from curation.stats.rater_bias import LeftAdvantage, bradley_terry_left_advantage
from curation.stats.strength import PreferenceStrength, StrengthFlag


@dataclass(frozen=True)
class RaterStep:
    """Step 1: the per-rater checks, who the rules leave out and why, and the judgments kept."""

    checks: RaterChecks
    bias_fit: LeftAdvantage
    excluded: dict[int, str]
    kept: PairwiseJudgments
    keep_rows: np.ndarray


def raters_step(run: FilterRun, rules: FilterRules, loaded: LoadedPairwise, graph: ImageGraph) -> RaterStep:
    j = loaded.judgments
    checks = rater_checks(j, rules, gold_answers=_gold_answers(run, loaded))
    bias_fit = bradley_terry_left_advantage(j, image_a=graph.image_a, image_b=graph.image_b,
                                            prompt_of_image=graph.prompt_of_image)
    excluded = raters_excluded(j, rules, checks)
    kept, keep_rows = judgments_kept(j, excluded)
    return RaterStep(checks=checks, bias_fit=bias_fit, excluded=excluded, kept=kept, keep_rows=keep_rows)


def unit_verdicts(run: FilterRun, rules: FilterRules, loaded: LoadedPairwise, graph: ImageGraph, raters: RaterStep,
                  consensus: PairConsensus, strength: PreferenceStrength | None,
                  missing_files: dict[int, str]) -> list[UnitVerdict]:
    """Step 2: keep or drop each unit, with every reason and the kind of the first one."""
    j = loaded.judgments
    dropped_by_rater = np.bincount(j.unit[~raters.keep_rows], minlength=j.n_units)
    verdicts = []
    for unit in range(j.n_units):
        verdict = int(consensus.verdict[unit])
        reasons, kinds = [], []
        if verdict < 0:
            reasons.append(consensus.reason_text(unit))
            kinds.append(DropReason.UNDECIDED)
        elif verdict == CHOICE_TIE and rules.drop_ties:
            reasons.append(f"{consensus.reason_text(unit)}; ties are dropped by this run")
            kinds.append(DropReason.TIE)
        elif (rules.drop_likely_wrong and strength is not None
              and strength.flag[unit] == StrengthFlag.LIKELY_WRONG):
            reasons.append(f"likely wrong: the machine judges' preference strength for it is "
                           f"{strength.mean[unit]:+.2f}, among the weakest {rules.likely_wrong_pct:g}%")
            kinds.append(DropReason.LIKELY_WRONG)
        for side, image in (("a", graph.image_a[unit]), ("b", graph.image_b[unit])):
            if int(graph.image_ids[image]) in missing_files:
                reasons.append(f"image {side} ({int(graph.image_ids[image])}) is missing from storage: "
                               f"{missing_files[int(graph.image_ids[image])]}")
                kinds.append(DropReason.MISSING_IMAGE)
        if reasons and dropped_by_rater[unit]:
            reasons.append(f"{int(dropped_by_rater[unit])} judgment(s) from excluded raters left out")
        confidence = float(consensus.confidence[unit])
        unit_strength = float(strength.mean[unit]) if strength is not None else math.nan
        verdicts.append(UnitVerdict(run=run, comparison_id=int(loaded.comparison_ids[unit]), keep=not reasons,
                                    strength=None if math.isnan(unit_strength) else round(unit_strength, 6),
                                    consensus=CHOICE_NAMES[verdict] if verdict >= 0 else "undecided",
                                    confidence=None if math.isnan(confidence) else round(confidence, 6),
                                    reasons=reasons, drop_reason=kinds[0] if kinds else ""))
    return verdicts


def run_summary(rules: FilterRules, loaded: LoadedPairwise, graph: ImageGraph, raters: RaterStep,
                consensus: PairConsensus, judges_report, verdicts: list[UnitVerdict], missing_files: dict[int, str],
                sections: dict, notes: list[str]) -> dict:
    """Step 3: the report's figures, from what steps 1 and 2 decided."""
    j = loaded.judgments
    judges, judge_matrix, strength = judges_report
    by_reason = Counter(v.drop_reason for v in verdicts)
    n_kept = by_reason.pop("", 0)
    alpha = krippendorff_alpha_bootstrap(Ratings.from_pairwise(raters.kept),
                                         n_resamples=max(1, rules.bootstrap_resamples), seed=rules.seed)
    checks = raters.checks
    summary = {
        "judgments": len(j), "judgments_used": int(raters.keep_rows.sum()), "units": j.n_units, "kept": n_kept,
        "dropped": j.n_units - n_kept,
        "alpha": number(alpha.alpha), "alpha_ci": [number(alpha.ci_low), number(alpha.ci_high)],
        "alpha_message": alpha.message or "",
        "consensus_method": consensus.method,
        "consensus_settings": consensus.settings,
        "consensus": consensus_description(consensus.method, consensus.settings),
        "raters": rater_table(loaded.rater_ids, j, checks.bias, raters.bias_fit, checks.agreement, checks.gold,
                              raters.excluded),
        "position_bias_fit": position_bias_fit_summary(raters.bias_fit),
        "machine_judges": judges, "judge_matrix": judge_matrix, "strength": strength_summary(strength),
        "transitivity": transitivity_summary(graph, consensus), "confidence_tradeoff": confidence_tradeoff(consensus),
        "drop_reasons": {kind: by_reason.get(kind, 0) for kind in DropReason.values},
        **sections,
    }
    if missing_files:
        units = np.isin(graph.image_ids[graph.image_a], list(missing_files)) | np.isin(
            graph.image_ids[graph.image_b], list(missing_files))
        notes.append(f"{int(units.sum())} unit(s) dropped: {len(missing_files)} of their image(s) have a file "
                     f"missing from storage")
    summary["image_files"] = {"checked": bool(rules.check_image_files), "missing": len(missing_files)}
    summary["notes"] = notes
    if raters.excluded and len(raters.excluded) == j.n_raters:
        summary["message"] = (f"these rules left out all {j.n_raters} rater(s) (each row says why): no judgment is "
                              f"left to decide a unit")
    elif consensus.message:
        summary["message"] = consensus.message
    return summary


def filter_run_evaluate(run: FilterRun) -> tuple[dict, list[UnitVerdict]]:
    """Read a run's judgments and decide: the summary for `FilterRun.summary` and a verdict per unit."""
    rules = FilterRules.from_json(run.rules)
    loaded = pairwise_judgments_load(project_id=run.project_id, aspect=rules.aspect, source="human")
    notes = []
    pairs = comparison_images_load(project_id=run.project_id, comparison_ids=loaded.comparison_ids)
    if pairs.missing.any():
        notes.append(f"{int(pairs.missing.sum())} judged unit(s) skipped: their comparison was deleted (with one of "
                     f"its images) while the run read the judgments")
        present = ~pairs.missing
        loaded = loaded.keeping_units(present)
        pairs = ComparisonImages(image_a=pairs.image_a[present], image_b=pairs.image_b[present],
                                 prompt=pairs.prompt[present])
    by_aspect = human_pairwise_by_aspect(project=run.project, run_aspect=rules.aspect, run_loaded=loaded)
    agreement_rows = agreement_by_aspect(by_aspect=by_aspect, n_resamples=rules.bootstrap_resamples, seed=rules.seed)
    scores = scores_load(project=run.project)
    sections = {"agreement_by_aspect": agreement_rows, **_score_sections(run, rules, scores, by_aspect, notes)}
    if len(loaded.judgments) == 0:
        return {"message": "no human judgments on this aspect yet: nothing to filter", "judgments": 0,
                "units": 0, "kept": 0, "dropped": 0, "raters": [], **sections, "notes": notes}, []
    graph = pairs.codes()

    raters = raters_step(run, rules, loaded, graph)
    if raters.bias_fit.graph_message:
        notes.append(raters.bias_fit.graph_message)
    consensus = rules_consensus(raters.kept, rules, unit_images=(graph.image_a, graph.image_b))
    judges_report = machine_judges_report(project_id=run.project_id, rules=rules, human=loaded, consensus=consensus,
                                          scores=scores)
    strength = judges_report[2]
    if strength is not None:
        notes.extend(f"left out of the preference strength: {why}" for why in strength.left_out)
    missing_files = {}
    if rules.check_image_files:
        missing_files = missing_image_files(project_id=run.project_id, image_ids=graph.image_ids)

    verdicts = unit_verdicts(run, rules, loaded, graph, raters, consensus, strength, missing_files)
    summary = run_summary(rules, loaded, graph, raters, consensus, judges_report, verdicts, missing_files, sections,
                          notes)
    return summary, verdicts


def _score_sections(run, rules, scores, by_aspect, notes) -> dict:
    """The report's aspect-score, personal-consistency and machine-score sections; a note for NaN scores."""
    aspect_scores = aspect_score_summary(scores, n_resamples=rules.bootstrap_resamples, seed=rules.seed)
    dropped_nan = aspect_scores["dropped_nan"] + aspect_scores["machine_dropped_nan"]
    if dropped_nan:
        notes.append(f"{dropped_nan} NaN aspect score(s) dropped before the score checks")
    return {"aspect_scores": aspect_scores,
            "rater_consistency": rater_consistency_summary(project=run.project, scores=scores, by_aspect=by_aspect),
            "machine_scores": machine_score_summary(scores)}


def _gold_answers(run, loaded) -> np.ndarray:
    """The expected choice of each loaded unit that is a gold unit (-1 for the others)."""
    from annotation.models import TaskType, WorkUnit

    codes = {"a": 0, "b": 1, "tie": 2}
    answers = np.full(len(loaded.comparison_ids), -1, dtype=np.int64)
    gold = dict(WorkUnit.objects.filter(project_id=run.project_id, task_type=TaskType.PAIRWISE, is_gold=True)
                .values_list("comparison_id", "gold_answer"))
    for code, comparison_id in enumerate(loaded.comparison_ids.tolist()):
        answer = gold.get(comparison_id)
        if answer and answer.get("choice") in codes:
            answers[code] = codes[answer["choice"]]
    return answers
