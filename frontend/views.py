"""Pages for people: home, the annotator workspace, a project's progress.

Access is decided by `annotation.selectors`; these views only translate its API exceptions
into the 404 / 403 pages a browser expects.
"""
import json

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.middleware.csrf import get_token
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from django.templatetags.static import static
from django.urls import reverse
from django.utils.safestring import mark_safe

from annotation import selectors
from curation.selectors import filter_run_get_for_user
from annotation.judging import ARTIFACT_REASONS
from annotation.models import AnnotatorProfile, TaskType
from frontend.instructions import TASK_GUIDES, instructions_for_task

# The workspace's ES modules import each other by relative path; the import map sends those
# paths to the hashed file names that the manifest storage writes in production.
WORKSPACE_MODULES = [
    "api.js", "completion.js", "dom.js", "keys.js", "messages.js", "onboarding.js", "queue.js", "stage.js", "tasks.js",
    "units.js", "workspace.js",
]

SKIP_REASONS = ["image did not load", "cannot judge", "prompt unclear", "offensive content"]


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
    """By role: an annotator sees their tasks with what is left and done today; a researcher or
    admin also each project's progress and latest filter run and export, and "New project"."""
    from curation.selectors import filter_run_raters_kept
    from frontend.views_projects import home_projects

    projects = home_projects(user=request.user)
    # "Where to look": the projects this person manages whose latest filter run has a report.
    results = [{**row, "raters_kept": filter_run_raters_kept(run=row["filter_run"])} for row in projects
               if row["can_manage"] and row["filter_run"] and row["filter_run"].status == "succeeded"]
    return render(request, "frontend/home.html", {
        "projects": projects, "results": results,
        "has_tasks": any(row["tasks"] for row in projects),
        "can_create": selectors.user_can_create_projects(request.user),
    })


@login_required
def workspace(request, slug: str, task_type: str):
    project = selectors.project_get_for_user(user=request.user, slug=slug)
    if task_type not in project.task_types or task_type not in TaskType.values:
        raise Http404(f"{task_type!r} is not switched on in project {slug!r}.")
    if project.is_archived:  # read-only: the work API would refuse every lease
        return render(request, "frontend/archived.html", {"project": project,
                                                          "can_manage": _can_manage(request.user, project)})
    instructions = instructions_for_task(text=project.instructions, task_type=task_type)
    config = {
        "user": request.user.pk,
        "slug": project.slug,
        "task_type": task_type,
        "aspects": project.aspects,
        "score_scale": project.score_scale,
        "rating_scale": project.rating_scale,
        "instructions": instructions,
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
        "task_guide": TASK_GUIDES[task_type],
        "instructions": instructions,
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
    project = selectors.project_get_for_user(user=request.user, slug=slug, manage=True)
    progress = selectors.project_progress(project=project)
    labels = dict(TaskType.choices)
    task_types = [{**row, "label": labels.get(row["task_type"], row["task_type"])} for row in progress["task_types"]]
    return render(request, "frontend/progress.html", {
        "project": project,
        "task_types": task_types,
        "annotators": [{**row, "median_s": None if row["median_ms"] is None else row["median_ms"] / 1000}
                       for row in progress["annotators"]],
        "active_leases": progress["active_leases"],
        "overlap_warning": progress["overlap_warning"],
        "adaptive": progress["adaptive"],
    })


@login_required
def auto_jobs(request, slug: str):
    """Project admins launch machine-annotation jobs and see the project's jobs."""
    from annotation.models import MachineAnnotator
    from mlworkers.models import AutoAnnotationJob
    from mlworkers.selectors import annotator_scores_overall, require_project_admin

    project = selectors.project_get_for_user(user=request.user, slug=slug)
    require_project_admin(user=request.user, project=project)
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

    job = auto_job_get_for_user(user=request.user, job_id=job_id)
    return render(request, "frontend/auto_job.html", {"job": job})


@login_required
def filter_runs(request, slug: str):
    """Researchers start filter runs from a form of the rules (checked by the API's serializer, its
    errors shown by the field they name) and see the project's runs."""
    from curation.api import FilterRunInputSerializer
    from curation.models import FilterRun
    from curation.services import filter_run_create
    from frontend.setting_forms import place_errors, rules_form

    project = selectors.project_get_for_user(user=request.user, slug=slug, manage=True)
    form, name, errors = rules_form(project=project), "default", {}
    if request.method == "POST":
        name = request.POST.get("name", "")
        rules = form.bind(request.POST)
        data = FilterRunInputSerializer(data={"name": name, "rules": {} if rules is None else rules})
        if not data.is_valid():
            errors = place_errors(data.errors, form=form, key="rules")
        elif rules is not None:
            try:
                run = filter_run_create(project=project, created_by=request.user, **data.validated_data)
            except ValidationError as exc:
                errors = place_errors(exc, form=form, key="rules")
            else:
                return redirect("filter-run", run_id=run.pk)
    return render(request, "frontend/filter_runs.html", {
        "project": project, "runs": FilterRun.objects.filter(project=project)[:100],
        "form": form, "name": name, "errors": errors,
    }, status=400 if errors or form.has_errors else 200)


DROPPED_PER_PAGE = 50


@login_required
def filter_run(request, run_id: int):
    """A run's report: figures, charts beside their tables, and its dropped units, a page at a time
    and optionally of one kind of reason and one aspect, with images and each vote as the annotator saw it."""
    from urllib.parse import urlencode

    from django.core.files.storage import default_storage
    from django.core.paginator import Paginator

    from curation.models import DropReason
    from curation.selectors import dropped_units, filter_run_aspects, unit_votes
    from frontend.report_chart_data import (
        aspect_labels_of, judge_matrix_table, report_chart_data, report_import_map,
    )

    run = filter_run_get_for_user(user=request.user, run_id=run_id)
    reason = request.GET.get("reason", "")
    if reason not in DropReason.values:
        reason = ""
    aspect = request.GET.get("aspect", "")
    if aspect not in filter_run_aspects(run=run):
        aspect = ""
    page = Paginator(dropped_units(run=run, reason=reason, aspect=aspect),
                     DROPPED_PER_PAGE).get_page(request.GET.get("page"))
    votes = unit_votes(project_id=run.project_id, aspect=run.rules.get("aspect", "overall"),
                       comparison_ids=[v.comparison_id for v in page])
    dropped = [{"verdict": v, "prompt": v.comparison.prompt.text[:120],
                "image_a": default_storage.url(v.comparison.image_a.preview_key),
                "image_b": default_storage.url(v.comparison.image_b.preview_key),
                "votes": votes.get(v.comparison_id, [])} for v in page]
    counts = (run.summary or {}).get("drop_reasons") or {}
    reasons = [{"value": value, "label": label, "count": counts.get(value)} for value, label in DropReason.choices]
    labels = aspect_labels_of(run.project)
    charts = report_chart_data(summary=run.summary or {}, aspect_labels=labels)
    return render(request, "frontend/filter_run.html", {
        "run": run, "dropped": dropped, "dropped_page": page, "reason": reason, "reasons": reasons,
        "aspect": aspect, "aspects": [{"value": key, "label": labels.get(key, key)}
                                      for key in filter_run_aspects(run=run)],
        "dropped_filters": urlencode({k: v for k, v in (("reason", reason), ("aspect", aspect)) if v}),
        "charts": charts, "matrix_table": judge_matrix_table(charts["matrix"]), "import_map": report_import_map(),
    })


@login_required
@require_POST
def filter_run_cancel(request, run_id: int):
    from core.jobs import job_cancel

    try:
        job_cancel(job=filter_run_get_for_user(user=request.user, run_id=run_id), actor=request.user)
    except ValidationError:
        pass  # it finished meanwhile: the page shows how
    return redirect("filter-run", run_id=run_id)


@login_required
def dataset_exports(request, slug: str):
    """Researchers start dataset exports from a form of the format, container and options (checked
    by the API's serializer, its errors shown by the field they name) and see the project's exports."""
    from curation.exports.api import DatasetExportInputSerializer
    from curation.exports.services import dataset_export_create
    from curation.models import DatasetExport, FilterRun
    from frontend.setting_forms import place_errors, options_form

    project = selectors.project_get_for_user(user=request.user, slug=slug, manage=True)
    inputs = DatasetExportInputSerializer().fields
    form, errors = options_form(project=project), {}
    runs = list(FilterRun.objects.filter(project=project, status=FilterRun.Status.SUCCEEDED).order_by("-pk")[:50])
    # The latest finished run is chosen unless one is named: the default format's consensus rows need one.
    chosen = {"format": "", "container": inputs["container"].default, "destination": "",
              "filter_run": request.GET.get("filter_run", str(runs[0].pk) if runs else "")}
    if request.method == "POST":
        chosen = {key: request.POST.get(key, "") for key in chosen}
        options = form.bind(request.POST)
        data = DatasetExportInputSerializer(data={**chosen, "filter_run": chosen["filter_run"] or None,
                                                  "options": {} if options is None else options})
        if not data.is_valid():
            errors = place_errors(data.errors, form=form, key="options")
        elif options is not None:
            fields = dict(data.validated_data)
            run_id = fields.pop("filter_run")
            run = None if run_id is None else FilterRun.objects.filter(pk=run_id, project=project).first()
            try:
                if run_id is not None and run is None:
                    raise ValidationError({"filter_run": f"no filter run {run_id} in this project"})
                export = dataset_export_create(project=project, filter_run=run, created_by=request.user, **fields)
            except ValidationError as exc:
                errors = place_errors(exc, form=form, key="options")
            else:
                return redirect("dataset-export", export_id=export.pk)
    return render(request, "frontend/exports.html", {
        "project": project, "form": form, "chosen": chosen, "errors": errors,
        "formats": list(inputs["format"].choices.items()),
        "format_help": inputs["format"].help_text, "containers": list(inputs["container"].choices.items()),
        "container_help": inputs["container"].help_text, "destination_help": inputs["destination"].help_text,
        "runs": runs,
        "exports": DatasetExport.objects.filter(project=project).select_related("filter_run")[:100],
    }, status=400 if errors or form.has_errors else 200)


@login_required
def dataset_export(request, export_id: int):
    """One export's live progress, cancel, and its files to download."""
    from curation.exports.selectors import dataset_export_get_for_user

    export = dataset_export_get_for_user(user=request.user, export_id=export_id)
    return render(request, "frontend/export.html", {"export": export})
