"""Pages for running a campaign: a project's settings (create, edit, archive) and its imports.

The forms post plain HTML; each is validated by the API's own serializers and saved by the same
services the API calls, so a page and the API accept and refuse the same things. Access is
decided by `annotation.selectors` (404 for what a user may not see, 403 for what they may see
but not manage)."""
import csv

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils.text import slugify
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from annotation import selectors, services
from annotation.api import ImportJobInputSerializer, ProjectInputSerializer, ProjectUpdateSerializer
from annotation.models import DEFAULT_ASPECTS, Project, TaskType
from annotation.uploads import ManifestTooLarge, ManifestUploadHandler

BLANK_ASPECT_ROWS = 2
REJECTED_PER_PAGE = 50
PROJECT_FIELDS = ["name", "instructions", "score_scale", "rating_scale", "overlap", "gold_rate", "lease_minutes",
                  "collection", "min_votes", "max_votes", "confidence_target", "judgment_budget"]


# --- projects -----------------------------------------------------------------------------

def _aspects_from_post(post) -> list[dict]:
    """The aspect rows of the form, blank rows left out; a row with a label and no key gets a key
    made from its label."""
    rows = zip(post.getlist("aspect_key"), post.getlist("aspect_label"), post.getlist("aspect_question"))
    aspects = []
    for key, label, question in rows:
        key, label, question = key.strip(), label.strip(), question.strip()
        if not (key or label or question):
            continue
        aspects.append({"key": key or slugify(label).replace("-", "_"), "label": label, "question": question})
    return aspects


def _project_data_from_post(post, *, creating: bool) -> dict:
    """What the form sent, shaped as the API's project serializers take it; blank numbers are
    left out, so a new project takes the defaults."""
    data = {name: post.get(name, "").strip() for name in PROJECT_FIELDS}
    data = {name: value for name, value in data.items() if value or name in ("name", "instructions")}
    if not creating:
        data["lease_minutes"] = data.get("lease_minutes") or None  # blank: back to the platform's default
        data["judgment_budget"] = data.get("judgment_budget") or None  # blank: no budget
    if creating:
        data["slug"] = post.get("slug", "").strip()
    data["task_types"] = post.getlist("task_types")
    data["aspects"] = _aspects_from_post(post)
    return data


def _error_text(detail) -> str:
    """A DRF error detail (strings, lists, nested dicts of them) as one readable line."""
    if isinstance(detail, dict):
        return "; ".join(f"{key}: {_error_text(value)}" for key, value in detail.items() if value)
    if isinstance(detail, list):
        parts = [_error_text(item) for item in detail]
        if any(isinstance(item, dict) for item in detail):
            return "; ".join(f"aspect {i}: {part}" for i, part in enumerate(parts, start=1) if part)
        return " ".join(parts)
    return str(detail)


def _field_errors(errors) -> dict[str, str]:
    """Serializer or service errors, one line per form field (`form` for the form itself)."""
    if isinstance(errors, ValidationError):
        errors = errors.message_dict if hasattr(errors, "error_dict") else {"form": errors.messages}
    return {("form" if key in ("non_field_errors", "__all__") else key): _error_text(value)
            for key, value in errors.items()}


def _form_context(*, project, values: dict, errors: dict) -> dict:
    aspects = list(values.get("aspects") or [])
    return {
        "project": project,
        "values": values,
        "errors": errors,
        "task_type_choices": TaskType.choices,
        "aspect_rows": aspects + [{"key": "", "label": "", "question": ""}] * BLANK_ASPECT_ROWS,
        "lease_minutes": settings.WORK_LEASE_MINUTES,
        "collection_choices": Project.Collection.choices,
    }


@login_required
def project_new(request):
    """A researcher (or platform admin) creates a project; they become its researcher."""
    if not selectors.user_can_create_projects(request.user):
        raise PermissionDenied("Creating projects needs the researcher permission.")
    if request.method == "POST":
        values = _project_data_from_post(request.POST, creating=True)
        data = ProjectInputSerializer(data=values)
        if data.is_valid():
            try:
                project = services.project_create(creator=request.user, **data.validated_data)
            except ValidationError as exc:
                errors = _field_errors(exc)
            else:
                messages.success(request, f"Project {project.name} created. Import a manifest to give it work.")
                return redirect("project-imports", slug=project.slug)
        else:
            errors = _field_errors(data.errors)
    else:
        values = {"task_types": [TaskType.PAIRWISE.value], "aspects": [dict(a) for a in DEFAULT_ASPECTS],
                  "score_scale": 5, "rating_scale": 10, "overlap": 3, "gold_rate": 0.05, "instructions": "",
                  "collection": "fixed", "min_votes": 2, "max_votes": 9, "confidence_target": 0.95}
        errors = {}
    return render(request, "frontend/project_form.html", _form_context(project=None, values=values, errors=errors),
                  status=400 if errors else 200)


@login_required
def project_settings(request, slug: str):
    """A project's page for its researchers and admins: its settings to edit, and archiving."""
    project = selectors.project_get_for_user(user=request.user, slug=slug, manage=True)
    errors = {}
    if request.method == "POST":
        values = _project_data_from_post(request.POST, creating=False)
        data = ProjectUpdateSerializer(data=values, partial=True)
        if data.is_valid():
            try:
                services.project_update(project=project, actor=request.user, **data.validated_data)
            except ValidationError as exc:
                errors = _field_errors(exc)
                project.refresh_from_db()
            else:
                messages.success(request, "Settings saved.")
                return redirect("project-settings", slug=project.slug)
        else:
            errors = _field_errors(data.errors)
        values = {**values, "slug": project.slug}
    else:
        values = {name: getattr(project, name) for name in [*PROJECT_FIELDS, "slug", "task_types", "aspects"]}
    return render(request, "frontend/project_form.html", _form_context(project=project, values=values, errors=errors),
                  status=400 if errors else 200)


@login_required
@require_POST
def project_archive(request, slug: str):
    """Archive the project (`archived=1`) or bring it back (`archived=0`)."""
    project = selectors.project_get_for_user(user=request.user, slug=slug, manage=True)
    archived = request.POST.get("archived") == "1"
    services.project_update(project=project, actor=request.user, is_archived=archived)
    messages.success(request, "Project archived: it is read-only now." if archived else "Project unarchived.")
    return redirect("project-settings", slug=project.slug)


# --- imports ------------------------------------------------------------------------------

def _images_root_from_post(post) -> str:
    """Where the form says relative paths point: an S3 prefix, or one of IMPORT_LOCAL_ROOTS,
    optionally a folder under it (the import service refuses what resolves outside those roots
    and a malformed prefix). Both at once are refused."""
    s3_prefix = post.get("s3_prefix", "").strip()
    root = post.get("images_root_base", "")
    if root not in settings.IMPORT_LOCAL_ROOTS:
        root = ""
    if s3_prefix and root:
        raise ValidationError({"images_root": "name a server folder or an S3 prefix, not both"})
    if s3_prefix:
        return s3_prefix
    below = post.get("images_root_below", "").strip().strip("/")
    return f"{root.rstrip('/')}/{below}" if root and below else root


@login_required
@csrf_exempt  # checked below, once the body has been read through the manifest's upload handler
def project_imports(request, slug: str):
    """Upload a manifest (images by path under a server folder or an S3 prefix, s3:// key or
    URL) and see the project's imports. As through the API, the manifest streams to a temporary
    file and is refused once past IMPORT_MANIFEST_MAX_BYTES (nothing is written then)."""
    project = selectors.project_get_for_user(user=request.user, slug=slug, manage=True)
    if request.method == "POST":
        request.upload_handlers = [ManifestUploadHandler(request)]
        try:
            request.FILES  # noqa: B018  (reads the body now, through the handler above)
        except ManifestTooLarge as exc:
            return _imports_page(request, project, {"manifest": _error_text(exc.detail)})
    return _project_imports(request, project)


@csrf_protect
def _project_imports(request, project):
    errors = {}
    if request.method == "POST":
        try:
            values = {"images_root": _images_root_from_post(request.POST)}
        except ValidationError as exc:
            return _imports_page(request, project, _field_errors(exc))
        if request.POST.get("max_pairs_per_prompt", "").strip():
            values["max_pairs_per_prompt"] = request.POST["max_pairs_per_prompt"].strip()
        if "manifest" in request.FILES:
            values["manifest"] = request.FILES["manifest"]
        data = ImportJobInputSerializer(data=values)
        if data.is_valid():
            try:
                job = services.import_job_create(
                    project=project, creator=request.user, manifest=data.validated_data["manifest"],
                    images_root=data.validated_data.get("images_root", ""),
                    max_pairs_per_prompt=data.validated_data.get("max_pairs_per_prompt"))
            except ValidationError as exc:
                errors = _field_errors(exc)
            except (ManifestTooLarge, selectors.ProjectArchived) as exc:
                errors = {"form": _error_text(exc.detail)}
            else:
                return redirect("import-job", job_id=job.pk)
        else:
            errors = _field_errors(data.errors)
    return _imports_page(request, project, errors)


def _imports_page(request, project, errors: dict):
    return render(request, "frontend/imports.html", {
        "project": project,
        "jobs": selectors.import_job_list(project=project)[:50],
        "local_roots": settings.IMPORT_LOCAL_ROOTS,
        "errors": errors,
        "max_manifest_mb": settings.IMPORT_MANIFEST_MAX_BYTES // (1024 * 1024),
    }, status=400 if errors else 200)


@login_required
@require_POST
def project_work_units_open(request, slug: str):
    """Create the work units missing for the project's task types (a task type switched on after
    its images were imported has none yet)."""
    project = selectors.project_get_for_user(user=request.user, slug=slug, manage=True)
    if project.is_archived:
        messages.error(request, "The project is archived: unarchive it to open work.")
    else:
        created = services.work_units_open(project=project)
        messages.success(request, f"{created} new work unit{'' if created == 1 else 's'} opened.")
    return redirect("project-imports", slug=project.slug)


@login_required
def import_job(request, job_id: int):
    """One import's live progress (polled from the API by imports.js) and its rejected lines."""
    job = selectors.import_job_get_for_user(user=request.user, job_id=job_id)
    rejected = Paginator(selectors.import_line_errors(job=job), REJECTED_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "frontend/import_job.html", {"job": job, "project": job.project, "rejected": rejected})


def _csv_cell(value) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a leading quote."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


class _Echo:
    def write(self, value):
        return value


@login_required
def import_job_rejected_csv(request, job_id: int):
    """The import's rejected lines as CSV: line, field, reason."""
    job = selectors.import_job_get_for_user(user=request.user, job_id=job_id)
    writer = csv.writer(_Echo())

    def rows():
        yield writer.writerow(["line", "field", "reason"])
        for error in selectors.import_line_errors(job=job).iterator(chunk_size=2000):
            yield writer.writerow([error.line, _csv_cell(error.field), _csv_cell(error.message)])

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="import-{job.pk}-rejected.csv"'
    return response


# --- the home page ------------------------------------------------------------------------

def home_projects(*, user) -> list[dict]:
    """Each of the user's projects as their home page shows it: its task types with the units
    left for them and what they did today; for its researchers and admins also its progress and
    its latest filter run and export."""
    from curation.selectors import latest_curation_jobs

    projects = list(selectors.project_list_for_user(user=user))
    roles = {project.pk: selectors.project_role(user=user, project=project) for project in projects}
    managed = [p.pk for p in projects if roles[p.pk] in selectors.MANAGER_ROLES]
    latest = latest_curation_jobs(project_ids=managed)
    labels = dict(TaskType.choices)
    rows = []
    for project in projects:
        can_manage = project.pk in latest
        tasks = []
        if not project.is_archived:
            for task_type in project.task_types:
                if task_type not in labels:
                    continue
                progress = selectors.work_progress(project=project, annotator=user, task_type=task_type)
                tasks.append({"key": task_type, "label": labels[task_type], **progress})
        row = {"project": project, "role": roles[project.pk], "tasks": tasks, "can_manage": can_manage,
               "is_admin": roles[project.pk] == "admin"}
        if can_manage:
            counts = selectors.project_unit_counts(project=project)
            total = counts["units_total"]
            row.update(counts, percent=round(100 * counts["units_complete"] / total) if total else 0,
                       **latest[project.pk])
        rows.append(row)
    return rows
