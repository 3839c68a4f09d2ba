"""Filter runs: create one (checked rules, next version), and execute it (a Celery task calls
this). The same rules on the same judgments give the same verdicts: every step is seeded."""
import math

import numpy as np
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction

from annotation.models import (
    AspectScore,
    Comparison,
    Image,
    PersonalRating,
    PreferenceJudgment,
    Project,
    WorkUnit,
)
from core.jobs import JobCancelled, JobLost, job_claim
from core.statistics import statistics_refresh, statistics_refresh_if_stale
from curation.agreement import krippendorff_alpha_bootstrap
from curation.image_files import missing_image_files
from curation.judge_report import machine_judges_report
from curation.judgments import CHOICE_NAMES, CHOICE_TIE, Ratings
from curation.loading import ComparisonImages, comparison_images_load, pairwise_judgments_load
from curation.machine_consistency import StrengthFlag
from curation.models import FilterRun, UnitVerdict
from curation.rater_bias import bradley_terry_left_advantage
from curation.report import (
    agreement_by_aspect,
    confidence_tradeoff,
    human_pairwise_by_aspect,
    number,
    position_bias_fit_summary,
    rater_table,
    strength_summary,
    transitivity_summary,
)
from curation.rule_application import judgments_kept, rater_checks, raters_excluded, rules_consensus
from curation.rules import FilterRules
from curation.score_report import aspect_score_summary, machine_score_summary, rater_consistency_summary, scores_load


@transaction.atomic
def filter_run_create(*, project: Project, name: str, rules: dict | None, created_by=None) -> FilterRun:
    """Record a run of `rules` (defaults filled in) as the next version of `name`; it runs after commit."""
    checked = FilterRules.from_json(rules)
    if checked.aspect != "overall" and checked.aspect not in project.aspect_keys:
        raise ValidationError({"rules": f"aspect: {checked.aspect!r} is not an aspect of this project"})
    last = (FilterRun.objects.select_for_update().filter(project=project, name=name).order_by("-version")
            .values_list("version", flat=True).first())
    run = FilterRun.objects.create(project=project, name=name, version=(last or 0) + 1, rules=checked.as_json(),
                                   created_by=created_by)
    from curation.tasks import filter_run_execute_task

    transaction.on_commit(lambda: filter_run_execute_task.delay(run.pk))
    return run


def filter_run_execute(*, run_id: int) -> FilterRun:
    """Compute a run's verdicts and report and store them in one transaction. Safe to deliver
    twice: only a queued run, or a running one whose worker died (it is computed again from the
    start), is claimed; a cancel is honoured before and after the computation."""
    lease = job_claim(FilterRun, run_id)
    run = FilterRun.objects.select_related("project").get(pk=run_id)
    if lease is None:  # finished, or another worker has it
        return run
    with lease.running():
        try:
            FilterRules.from_json(run.rules)
        except ValidationError as exc:  # rules stored around filter_run_create (the admin): final, not retried
            lease.fail("; ".join(exc.messages))
            run.refresh_from_db()
            return run
        try:
            statistics_refresh_if_stale(*_READ_MODELS)
            summary, verdicts = _evaluate(run)
            lease.beat()
            with transaction.atomic():
                verdicts = _without_deleted_comparisons(run, summary, verdicts)
                UnitVerdict.objects.filter(run=run).delete()
                UnitVerdict.objects.bulk_create(verdicts, batch_size=5000)
                if run.rules.get("suspend_excluded_raters"):
                    summary["suspended"] = _suspend_excluded(run, summary)
                if not lease.succeed(summary.get("message", ""), summary=summary):
                    raise JobLost()  # another worker took the run over: store nothing
        except JobCancelled:
            lease.cancelled("cancelled; no verdicts were stored")
            run.refresh_from_db()
            return run
        statistics_refresh(UnitVerdict)
    run.refresh_from_db()
    return run


# What a run reads in bulk: their statistics are refreshed first where many rows changed.
_READ_MODELS = (PreferenceJudgment, AspectScore, PersonalRating, Comparison, Image, WorkUnit)


def _score_sections(run, rules, scores, by_aspect, notes) -> dict:
    """The report's aspect-score, personal-consistency and machine-score sections; a note for NaN scores."""
    aspect_scores = aspect_score_summary(scores, n_resamples=rules.bootstrap_resamples, seed=rules.seed)
    dropped_nan = aspect_scores["dropped_nan"] + aspect_scores["machine_dropped_nan"]
    if dropped_nan:
        notes.append(f"{dropped_nan} NaN aspect score(s) dropped before the score checks")
    return {"aspect_scores": aspect_scores,
            "rater_consistency": rater_consistency_summary(project=run.project, scores=scores, by_aspect=by_aspect),
            "machine_scores": machine_score_summary(scores)}


def _without_deleted_comparisons(run, summary, verdicts) -> list:
    """The verdicts whose comparison still exists; the summary's counts and notes follow (a
    comparison goes with its images, which may be deleted while a run computes)."""
    exists = ~comparison_images_load(project_id=run.project_id, comparison_ids=np.array(
        [v.comparison_id for v in verdicts], dtype=np.int64)).missing
    if exists.all():
        return verdicts
    gone = [v for v, ok in zip(verdicts, exists) if not ok]
    summary["units"] -= len(gone)
    summary["kept"] -= sum(v.keep for v in gone)
    summary["dropped"] -= sum(not v.keep for v in gone)
    summary.setdefault("notes", []).append(f"{len(gone)} unit(s) skipped: their comparison was deleted (with one of "
                                           f"its images) while the run computed")
    return [v for v, ok in zip(verdicts, exists) if ok]


def _evaluate(run: FilterRun):
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
    j = loaded.judgments
    by_aspect = human_pairwise_by_aspect(project=run.project, run_aspect=rules.aspect, run_loaded=loaded)
    agreement_rows = agreement_by_aspect(by_aspect=by_aspect, n_resamples=rules.bootstrap_resamples, seed=rules.seed)
    scores = scores_load(project=run.project)
    score_sections = _score_sections(run, rules, scores, by_aspect, notes)
    if len(j) == 0:
        return {"message": "no human judgments on this aspect yet: nothing to filter", "judgments": 0,
                "units": 0, "kept": 0, "dropped": 0, "raters": [], "agreement_by_aspect": agreement_rows,
                **score_sections, "notes": notes}, []
    graph = pairs.codes()

    checks = rater_checks(j, rules, gold_answers=_gold_answers(run, loaded))
    bias, agreement, gold = checks.bias, checks.agreement, checks.gold
    bias_fit = bradley_terry_left_advantage(j, image_a=graph.image_a, image_b=graph.image_b,
                                            prompt_of_image=graph.prompt_of_image)
    if bias_fit.graph_message:
        notes.append(bias_fit.graph_message)
    excluded = raters_excluded(j, rules, checks)
    kept, keep_rows = judgments_kept(j, excluded)
    consensus = rules_consensus(kept, rules)
    dropped_by_rater = np.bincount(j.unit[~keep_rows], minlength=j.n_units)
    judges, judge_matrix, strength = machine_judges_report(project_id=run.project_id, rules=rules, human=loaded,
                                                           consensus=consensus, scores=scores)
    if strength is not None:
        notes.extend(f"left out of the preference strength: {why}" for why in strength.left_out)
    missing_files = {}
    if rules.check_image_files:
        missing_files = missing_image_files(project_id=run.project_id, image_ids=graph.image_ids)

    verdicts, n_kept = [], 0
    for unit in range(j.n_units):
        verdict = int(consensus.verdict[unit])
        reasons = []
        if verdict < 0:
            reasons.append(consensus.reason_text(unit))
        elif verdict == CHOICE_TIE and rules.drop_ties:
            reasons.append(f"{consensus.reason_text(unit)}; ties are dropped by this run")
        elif (rules.drop_likely_wrong and strength is not None
              and strength.flag[unit] == StrengthFlag.LIKELY_WRONG):
            reasons.append(f"likely wrong: the machine judges' preference strength for it is "
                           f"{strength.mean[unit]:+.2f}, among the weakest {rules.likely_wrong_pct:g}%")
        for side, image in (("a", graph.image_a[unit]), ("b", graph.image_b[unit])):
            if int(graph.image_ids[image]) in missing_files:
                reasons.append(f"image {side} ({int(graph.image_ids[image])}) is missing from storage: "
                               f"{missing_files[int(graph.image_ids[image])]}")
        if reasons and dropped_by_rater[unit]:
            reasons.append(f"{int(dropped_by_rater[unit])} judgment(s) from excluded raters left out")
        keep = not reasons
        n_kept += keep
        confidence = float(consensus.confidence[unit])
        unit_strength = float(strength.mean[unit]) if strength is not None else math.nan
        verdicts.append(UnitVerdict(run=run, comparison_id=int(loaded.comparison_ids[unit]), keep=keep,
                                    strength=None if math.isnan(unit_strength) else round(unit_strength, 6),
                                    consensus=CHOICE_NAMES[verdict] if verdict >= 0 else "undecided",
                                    confidence=None if math.isnan(confidence) else round(confidence, 6),
                                    reasons=reasons))

    alpha = krippendorff_alpha_bootstrap(Ratings.from_pairwise(kept), n_resamples=max(1, rules.bootstrap_resamples),
                                         seed=rules.seed)
    summary = {
        "judgments": len(j), "judgments_used": int(keep_rows.sum()), "units": j.n_units, "kept": n_kept,
        "dropped": j.n_units - n_kept,
        "alpha": number(alpha.alpha), "alpha_ci": [number(alpha.ci_low), number(alpha.ci_high)],
        "alpha_message": alpha.message or "",
        "consensus_method": consensus.method,
        "raters": rater_table(loaded.rater_ids, j, bias, bias_fit, agreement, gold, excluded),
        "position_bias_fit": position_bias_fit_summary(bias_fit),
    }
    summary["agreement_by_aspect"] = agreement_rows
    summary["machine_judges"] = judges
    summary["judge_matrix"] = judge_matrix
    summary["strength"] = strength_summary(strength)
    summary["transitivity"] = transitivity_summary(graph, consensus)
    summary["confidence_tradeoff"] = confidence_tradeoff(consensus)
    summary.update(score_sections)
    if missing_files:
        units = np.isin(graph.image_ids[graph.image_a], list(missing_files)) | np.isin(
            graph.image_ids[graph.image_b], list(missing_files))
        notes.append(f"{int(units.sum())} unit(s) dropped: {len(missing_files)} of their image(s) have a file "
                     f"missing from storage")
    summary["image_files"] = {"checked": bool(rules.check_image_files), "missing": len(missing_files)}
    summary["notes"] = notes
    if excluded and len(excluded) == j.n_raters:
        summary["message"] = (f"these rules left out all {j.n_raters} rater(s) (each row says why): no judgment is "
                              f"left to decide a unit")
    elif consensus.message:
        summary["message"] = consensus.message
    return summary, verdicts


def _suspend_excluded(run, summary) -> list[str]:
    """Suspend the people this run left out (machines are never members); returns their names."""
    from annotation.services import membership_suspend

    names = [r["rater"] for r in summary["raters"] if r["excluded"] and not r["rater"].startswith("machine:")]
    users = {u.username: u for u in get_user_model().objects.filter(username__in=names)}
    for row in summary["raters"]:
        if row["rater"] in users:
            membership_suspend(project=run.project, user=users[row["rater"]],
                               reason=f"filter run {run.name} v{run.version}: {row['excluded']}")
    return sorted(users)


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
