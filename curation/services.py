"""Filter runs: create one (checked rules, next version), and execute it (a Celery task calls
this). The same rules on the same judgments give the same verdicts: every step is seeded."""
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
from core.audit import audit_record
from core.jobs import JobCancelled, JobLost, job_claim
from core.models import AuditAction
from core.statistics import statistics_refresh, statistics_refresh_if_stale
from curation.loading import comparison_images_load
from curation.models import FilterRun, UnitVerdict
from curation.report.filter_run import filter_run_evaluate
from curation.rules import FilterRules


@transaction.atomic
def filter_run_create(*, project: Project, name: str, rules: dict | None, created_by=None,
                      enqueue: bool = True) -> FilterRun:
    """Record a run of `rules` (defaults filled in) as the next version of `name`; it runs after
    commit, on a worker (`enqueue`), or when the caller calls `filter_run_execute`."""
    checked = FilterRules.from_json(rules)
    if checked.aspect != "overall" and checked.aspect not in project.aspect_keys:
        raise ValidationError({"rules": f"aspect: {checked.aspect!r} is not an aspect of this project"})
    last = (FilterRun.objects.select_for_update().filter(project=project, name=name).order_by("-version")
            .values_list("version", flat=True).first())
    run = FilterRun.objects.create(project=project, name=name, version=(last or 0) + 1, rules=checked.as_json(),
                                   created_by=created_by)
    audit_record(actor=created_by, action=AuditAction.JOB_STARTED, project=project, target=f"filter run {run.pk}")
    if enqueue:
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
            summary, verdicts = filter_run_evaluate(run)
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
