"""Pages for people: home, the annotator workspace, a project's progress.

Access is decided by `annotation.selectors`; these views only translate its API exceptions
into the 404 / 403 pages a browser expects.
"""
import json

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.middleware.csrf import get_token
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from django.templatetags.static import static
from django.urls import reverse
from django.utils.safestring import mark_safe
from rest_framework.exceptions import NotFound, PermissionDenied

from annotation import selectors
from annotation.judging import ARTIFACT_REASONS
from annotation.models import AnnotatorProfile, TaskType
from frontend import report_plots

# The workspace's ES modules import each other by relative path; the import map sends those
# paths to the hashed file names that the manifest storage writes in production.
WORKSPACE_MODULES = [
    "api.js", "dom.js", "keys.js", "messages.js", "onboarding.js", "queue.js", "stage.js", "tasks.js", "units.js",
    "workspace.js",
]

SKIP_REASONS = ["image did not load", "cannot judge", "prompt unclear", "offensive content"]


def _project_or_404(user, slug: str, *, manage: bool = False):
    try:
        return selectors.project_get_for_user(user=user, slug=slug, manage=manage)
    except NotFound:
        raise Http404(f"No project {slug!r} that you can see.") from None
    except PermissionDenied as exc:
        raise DjangoPermissionDenied(str(exc.detail)) from None


def _filter_run_or_404(user, run_id: int):
    from curation.selectors import filter_run_get_for_user

    try:
        return filter_run_get_for_user(user=user, run_id=run_id)
    except NotFound:
        raise Http404(f"No filter run {run_id} that you can see.") from None


def _can_manage(user, project) -> bool:
    return selectors.project_role(user=user, project=project) in selectors.MANAGER_ROLES


def _key_for(n: int) -> str:
    """The digit key that picks `n` on a scale: 1..9 themselves, 10 is `0`, larger ones have none."""
    return str(n) if n < 10 else ("0" if n == 10 else "")


def _has_consent(user) -> bool:
    profile = getattr(user, "annotator_profile", None)  # a missing profile raises an AttributeError subclass
    return bool(profile and profile.consent_at)


def _import_map() -> str:
    prefix = static("frontend/")
    imports = {}
    for name in WORKSPACE_MODULES:
        hashed = static(f"frontend/{name}")
        if hashed != prefix + name:
            imports[prefix + name] = hashed
    text = json.dumps({"imports": imports})
    # Same escaping as json_script: the map sits inside a <script> element.
    return mark_safe(text.replace("<", "\\u003C").replace(">", "\\u003E").replace("&", "\\u0026"))


@login_required
def home(request):
    projects = [
        {
            "project": project,
            "task_types": [(t, TaskType(t).label) for t in project.task_types if t in TaskType.values],
            "can_manage": _can_manage(request.user, project),
            "is_admin": selectors.project_role(user=request.user, project=project) == "admin",
        }
        for project in selectors.project_list_for_user(user=request.user)
    ]
    return render(request, "frontend/home.html", {"projects": projects})


@login_required
def workspace(request, slug: str, task_type: str):
    project = _project_or_404(request.user, slug)
    if task_type not in project.task_types or task_type not in TaskType.values:
        raise Http404(f"{task_type!r} is not switched on in project {slug!r}.")
    config = {
        "user": request.user.pk,
        "slug": project.slug,
        "task_type": task_type,
        "aspects": project.aspects,
        "score_scale": project.score_scale,
        "rating_scale": project.rating_scale,
        "instructions": project.instructions,
        "api_base": f"/api/v1/projects/{project.slug}/work/",
        "profile_url": "/api/v1/me/profile/",
        "login_url": reverse("login"),
        "artifact_reasons": ARTIFACT_REASONS,
        "consent": _has_consent(request.user),
        "csrf_token": get_token(request),
    }
    reasons = [{"key": r, "label": r.replace("_", " ").capitalize(), "hotkey": _key_for(i)}
               for i, r in enumerate(ARTIFACT_REASONS, start=1)]
    context = {
        "project": project,
        "task_type": task_type,
        "task_label": TaskType(task_type).label,
        "config": config,
        "import_map": _import_map(),
        "aspects": project.aspects,
        "scores": [(n, _key_for(n)) for n in range(1, project.score_scale + 1)],
        "ratings": [(n, _key_for(n)) for n in range(1, project.rating_scale + 1)],
        "reasons": reasons,
        "skip_reasons": SKIP_REASONS,
        "age_bands": AnnotatorProfile.AgeBand.choices,
        "experience": AnnotatorProfile.Experience.choices,
        "can_manage": _can_manage(request.user, project),
    }
    return render(request, "frontend/workspace.html", context)


@login_required
def project_progress(request, slug: str):
    project = _project_or_404(request.user, slug, manage=True)
    progress = selectors.project_progress(project=project)
    labels = dict(TaskType.choices)
    task_types = [{**row, "label": labels.get(row["task_type"], row["task_type"])} for row in progress["task_types"]]
    return render(request, "frontend/progress.html", {
        "project": project,
        "task_types": task_types,
        "annotators": [{**row, "median_s": None if row["median_ms"] is None else row["median_ms"] / 1000}
                       for row in progress["annotators"]],
        "active_leases": progress["active_leases"],
    })


@login_required
def auto_jobs(request, slug: str):
    """Project admins launch machine-annotation jobs and see the project's jobs."""
    from annotation.models import MachineAnnotator
    from mlworkers.models import AutoAnnotationJob
    from mlworkers.selectors import annotator_scores_overall, require_project_admin

    project = _project_or_404(request.user, slug)
    try:
        require_project_admin(user=request.user, project=project)
    except PermissionDenied as exc:
        raise DjangoPermissionDenied(str(exc.detail)) from None
    annotators = list(MachineAnnotator.objects.filter(is_active=True).order_by("name"))
    return render(request, "frontend/auto_jobs.html", {
        "project": project,
        "annotators": annotators,
        "overall_scorers": {a.pk for a in annotators if annotator_scores_overall(a)},
        "jobs": AutoAnnotationJob.objects.filter(project=project).select_related("machine_annotator")[:100],
    })


@login_required
def auto_job(request, job_id: int):
    """One job's live progress, with cancel and resume."""
    from mlworkers.selectors import auto_job_get_for_user

    try:
        job = auto_job_get_for_user(user=request.user, job_id=job_id)
    except NotFound:
        raise Http404(f"No auto-annotation job {job_id} that you can see.") from None
    return render(request, "frontend/auto_job.html", {"job": job})


@login_required
def filter_runs(request, slug: str):
    """Researchers start filter runs and see the project's runs."""
    import json as _json

    from curation.models import FilterRun
    from curation.rules import FilterRules

    project = _project_or_404(request.user, slug, manage=True)
    return render(request, "frontend/filter_runs.html", {
        "project": project, "runs": FilterRun.objects.filter(project=project)[:100],
        "default_rules": _json.dumps(FilterRules().as_json(), indent=1),
    })


DROPPED_SHOWN = 200


@login_required
def filter_run(request, run_id: int):
    """A run's report: figures, annotators (table and plot), dropped units with images and votes."""
    from django.core.files.storage import default_storage

    from annotation.models import PreferenceJudgment
    from curation.models import UnitVerdict

    run = _filter_run_or_404(request.user, run_id)
    verdicts = list(UnitVerdict.objects.filter(run=run, keep=False)
                    .select_related("comparison__prompt", "comparison__image_a", "comparison__image_b")
                    .order_by("id")[:DROPPED_SHOWN + 1])
    votes = {}
    for comparison_id, choice in (PreferenceJudgment.objects.filter(
            comparison_id__in=[v.comparison_id for v in verdicts], aspect=run.rules.get("aspect", "overall"),
            source="human", retracted_at__isnull=True).values_list("comparison_id", "choice")):
        votes.setdefault(comparison_id, []).append(choice)
    dropped = [{"verdict": v, "prompt": v.comparison.prompt.text[:120],
                "image_a": default_storage.url(v.comparison.image_a.preview_key),
                "image_b": default_storage.url(v.comparison.image_b.preview_key),
                "judgments": ", ".join(sorted(votes.get(v.comparison_id, [])))} for v in verdicts[:DROPPED_SHOWN]]
    summary = run.summary
    return render(request, "frontend/filter_run.html", {
        "run": run, "dropped": dropped, "dropped_more": len(verdicts) > DROPPED_SHOWN,
        "plot": report_plots.reliability_dots(summary.get("raters", [])),
        "strength_bars": report_plots.strength_bars((summary.get("strength") or {}).get("histogram")),
        "agreement_plot": report_plots.agreement_bars(summary.get("agreement_by_aspect", [])),
        "bias_plot": report_plots.position_bias_rows(summary.get("raters", [])),
        "matrix_plot": report_plots.agreement_matrix(summary.get("judge_matrix")),
    })


@login_required
@require_POST
def filter_run_cancel(request, run_id: int):
    from core.jobs import job_cancel

    try:
        job_cancel(job=_filter_run_or_404(request.user, run_id))
    except ValidationError:
        pass  # it finished meanwhile: the page shows how
    return redirect("filter-run", run_id=run_id)


@login_required
def dataset_exports(request, slug: str):
    """Researchers start dataset exports and see the project's exports."""
    from curation.exports.options import CONTAINERS, FORMATS
    from curation.models import DatasetExport, FilterRun

    project = _project_or_404(request.user, slug, manage=True)
    return render(request, "frontend/exports.html", {
        "project": project, "formats": FORMATS, "containers": CONTAINERS,
        "runs": FilterRun.objects.filter(project=project, status=FilterRun.Status.SUCCEEDED)[:50],
        "exports": DatasetExport.objects.filter(project=project).select_related("filter_run")[:100],
        "selected_run": request.GET.get("filter_run", ""),
    })


@login_required
def dataset_export(request, export_id: int):
    """One export's live progress, cancel, and its files to download."""
    from curation.exports.selectors import dataset_export_get_for_user

    try:
        export = dataset_export_get_for_user(user=request.user, export_id=export_id)
    except NotFound:
        raise Http404(f"No export {export_id} that you can see.") from None
    return render(request, "frontend/export.html", {"export": export})
