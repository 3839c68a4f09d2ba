"""Reads of curation with logic: the one place access to a filter run is decided, and the one
definition of a live judgment (for the ORM and for raw SQL)."""
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db.models import Q
from django.http import Http404

from annotation.models import PreferenceJudgment, Source
from annotation.selectors import MANAGER_ROLES, project_role
from curation.models import DropReason, FilterRun, UnitVerdict


def filter_run_get_for_user(*, user, run_id: int) -> FilterRun:
    """The run, for the researchers and admins of its project; Http404 for anyone else."""
    run = FilterRun.objects.select_related("project", "created_by").filter(pk=run_id).first()
    if run is None or project_role(user=user, project=run.project) not in MANAGER_ROLES:
        raise Http404(f"No filter run {run_id} that you can see.")
    return run


# A live judgment: not undone by its author and not set aside while its author is suspended.
# Machine judgments are never undone or set aside, so the same condition holds for them.
LIVE_JUDGMENT = Q(retracted_at__isnull=True, excluded_reason="")


def live_judgment_sql(alias: str) -> str:
    """LIVE_JUDGMENT for raw SQL over a judgment table aliased `alias`."""
    return f"{alias}.retracted_at IS NULL AND {alias}.excluded_reason = ''"


def live_human_sql(alias: str) -> str:
    """A live judgment made by a person, for raw SQL."""
    return f"{alias}.source = 'human' AND {live_judgment_sql(alias)}"


@dataclass(frozen=True)
class Vote:
    """One person's answer on a unit: the side as they saw it, and the comparison's own side."""

    seen: str  # left, right or tie
    side: str  # a, b or tie

    def __str__(self) -> str:
        return "tie" if self.side == "tie" else f"{self.seen} ({self.side})"


def unit_votes(*, project_id: int, aspect: str, comparison_ids) -> dict[int, list[Vote]]:
    """The live human votes on each of `comparison_ids` for `aspect`, in the order they were made."""
    votes: dict[int, list[Vote]] = {}
    rows = (PreferenceJudgment.objects.filter(LIVE_JUDGMENT, project_id=project_id, source=Source.HUMAN,
                                              aspect=aspect, comparison_id__in=list(comparison_ids))
            .order_by("id").values_list("comparison_id", "choice", "left_image_id", "comparison__image_a_id"))
    for comparison_id, choice, left_image_id, image_a_id in rows:
        if choice == "tie":
            seen = "tie"
        else:
            chose_left = (choice == "a") == (left_image_id == image_a_id)
            seen = "left" if chose_left else "right"
        votes.setdefault(comparison_id, []).append(Vote(seen=seen, side=choice))
    return votes


def filter_run_aspects(*, run: FilterRun) -> list[str]:
    """The aspects a run's verdicts may be asked for: overall and the project's aspect keys."""
    return ["overall", *run.project.aspect_keys]


def run_verdicts_of_aspect(*, run: FilterRun, verdicts, aspect: str):
    """`verdicts` of `run` on `aspect` (all of them for "", none for another of the project's aspects:
    a run decides the units of its one aspect, `rules.aspect`); ValidationError naming an aspect the
    project does not have."""
    if not aspect:
        return verdicts
    known = filter_run_aspects(run=run)
    if aspect not in known:
        raise ValidationError({"aspect": f"unknown aspect {aspect!r}; one of {', '.join(known)}"})
    return verdicts if aspect == run.rules.get("aspect", "overall") else verdicts.none()


def dropped_units(*, run: FilterRun, reason: str = "", aspect: str = ""):
    """A run's dropped units (with their comparison, prompt and images), optionally of one reason kind
    and of one aspect."""
    if reason and reason not in DropReason.values:
        raise ValidationError({"reason": f"unknown reason {reason!r}; one of {', '.join(DropReason.values)}"})
    verdicts = (UnitVerdict.objects.filter(run=run, keep=False)
                .select_related("comparison__prompt", "comparison__image_a", "comparison__image_b").order_by("id"))
    verdicts = run_verdicts_of_aspect(run=run, verdicts=verdicts, aspect=aspect)
    return verdicts.filter(drop_reason=reason) if reason else verdicts


def latest_curation_jobs(*, project_ids) -> dict[int, dict]:
    """Per project id: its latest filter run and latest dataset export (None where it has none).
    Two queries whatever the number of projects (PostgreSQL's DISTINCT ON where available)."""
    from django.db import connection

    from curation.models import DatasetExport

    ids = list(project_ids)
    latest = {pid: {"filter_run": None, "export": None} for pid in ids}
    for model, key in ((FilterRun, "filter_run"), (DatasetExport, "export")):
        rows = model.objects.filter(project_id__in=ids)
        if connection.vendor == "postgresql":
            rows = rows.order_by("project_id", "-id").distinct("project_id")
        else:
            rows = rows.order_by("project_id", "-id")
        for row in rows:
            if latest[row.project_id][key] is None:
                latest[row.project_id][key] = row
    return latest


def filter_run_latest_raters(*, project) -> tuple[FilterRun | None, dict[str, dict]]:
    """The project's latest succeeded filter run and its per-person rows (agreement with the
    consensus, gold accuracy, ...) by username; (None, {}) when no run has succeeded yet."""
    run = (FilterRun.objects.filter(project=project, status=FilterRun.Status.SUCCEEDED)
           .order_by("-finished_at", "-id").first())
    if run is None:
        return None, {}
    rows = (run.summary or {}).get("raters") or []
    return run, {row["rater"]: row for row in rows if not str(row.get("rater", "")).startswith("machine:")}


def filter_run_raters_kept(*, run: FilterRun) -> tuple[int, int]:
    """(raters the run kept, raters it judged) from its report: a rater is kept unless a rule
    left them out. (0, 0) for a run without a report yet."""
    rows = (run.summary or {}).get("raters") or []
    return sum(1 for row in rows if not row.get("excluded")), len(rows)
