"""Reads with logic in them, and the one place access to a project is decided."""
import re
from datetime import datetime
from datetime import timezone as dt_timezone

from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404
from rest_framework import status
from rest_framework.exceptions import APIException

from annotation.models import (
    ArtifactFlag, AspectScore, Comparison, Image, ImportJob, Membership, PersonalRating, PreferenceJudgment,
    Project, Prompt,
)

MANAGER_ROLES = (Membership.Role.RESEARCHER, Membership.Role.ADMIN)


def user_is_platform_admin(user) -> bool:
    return bool(user.is_authenticated and (user.is_superuser or user.is_staff))


def user_can_create_projects(user) -> bool:
    return user_is_platform_admin(user) or user.has_perm("annotation.add_project")


def project_list_for_user(*, user) -> QuerySet[Project]:
    projects = Project.objects.all()
    if not user_is_platform_admin(user):
        projects = projects.filter(memberships__user=user)
    return projects.order_by("slug")


def project_role(*, user, project: Project) -> str | None:
    """The user's role in the project: a platform admin counts as the project's admin."""
    if user_is_platform_admin(user):
        return Membership.Role.ADMIN
    return Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()


def project_get_for_user(*, user, slug: str, manage: bool = False) -> Project:
    """The project `slug` if `user` may see it, else Http404 (never revealing that it exists);
    with `manage`, PermissionDenied unless the user is a researcher or admin of it."""
    project = Project.objects.filter(slug=slug).first()
    role = project_role(user=user, project=project) if project else None
    if project is None or role is None:
        raise Http404(f"No project {slug!r} that you can see.")
    if manage and role not in MANAGER_ROLES:
        raise PermissionDenied(f"Managing project {slug!r} needs the researcher or admin role.")
    return project


class ProjectArchived(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "project_archived"


def project_require_writable(*, project: Project) -> None:
    """An archived project is read-only: no work is handed out or stored, nothing is imported or
    annotated by machines. Raises ProjectArchived (409) naming how to bring it back."""
    if project.is_archived:
        raise ProjectArchived(f"Project {project.slug!r} is archived and read-only; a researcher or admin of it "
                              f"can unarchive it (PATCH is_archived false) to change it again.")


def audit_entries_for_user(*, user, slug: str) -> QuerySet:
    """The audit log of project `slug`, newest first: for its admins (and platform admins) only."""
    from core.audit import audit_entries_for_project

    project = project_get_for_user(user=user, slug=slug)
    if project_role(user=user, project=project) != Membership.Role.ADMIN:
        raise PermissionDenied(f"The audit log of project {slug!r} is for its admins.")
    return audit_entries_for_project(project=project)


def membership_list(*, project: Project) -> QuerySet[Membership]:
    """The project's members by username, each with their profile (for the pseudonym): only for
    the project's researchers and admins, who reach it through `project_get_for_user(manage=True)`."""
    return (Membership.objects.filter(project=project).select_related("user__annotator_profile")
            .order_by("user__username"))


def membership_for_work(*, user, slug: str) -> Membership:
    """The person's membership of project `slug`, with the project, in one query: Http404 when
    they may not see it, PermissionDenied when they see it without being a member."""
    # order_by(): Meta.ordering would join Project again just to sort a single row.
    found = list(Membership.objects.select_related("project").filter(project__slug=slug, user=user).order_by()[:1])
    membership = found[0] if found else None
    if membership is not None:
        membership.user = user
    else:
        if user_is_platform_admin(user) and Project.objects.filter(slug=slug).exists():
            raise PermissionDenied(f"Join project {slug!r} as a member to annotate in it.")
        raise Http404(f"No project {slug!r} that you can see.")
    return membership


_CONTENT_ADDRESS = re.compile(r"[0-9a-f]{64}")


def image_file_check_for_user(*, user, key: str) -> None:
    """Returns when `user` may see the stored file `key`: the original or the preview of an image
    of a project they are a member of (any such project: a file is stored once, by its sha256, for
    every project holding those bytes), or any image's for a platform admin. Raises Http404
    otherwise, whether or not the file exists; files that are no image's (import manifests) are
    nobody's to fetch."""
    sha256 = key.rsplit("/", 1)[-1].split(".", 1)[0]
    if not user.is_authenticated or not _CONTENT_ADDRESS.fullmatch(sha256):
        raise Http404("No such file that you can see.")
    images = Image.objects.filter(sha256=sha256).filter(Q(storage_key=key) | Q(preview_key=key))
    if not user_is_platform_admin(user):
        images = images.filter(project__memberships__user=user)
    if not images.exists():
        raise Http404("No such file that you can see.")


def prompt_list(*, project: Project) -> QuerySet[Prompt]:
    return Prompt.objects.filter(project=project).order_by("id")


def image_list(*, project: Project) -> QuerySet[Image]:
    return Image.objects.filter(project=project).order_by("id")


def comparison_list(*, project: Project) -> QuerySet[Comparison]:
    return Comparison.objects.filter(project=project).order_by("id")


def import_job_get_for_user(*, user, job_id: int) -> ImportJob:
    job = ImportJob.objects.select_related("project").filter(pk=job_id).first()
    if job is None:
        raise Http404(f"No import job {job_id} that you can see.")
    role = project_role(user=user, project=job.project)
    if role not in MANAGER_ROLES:
        raise Http404(f"No import job {job_id} that you can see.")
    return job


JUDGMENT_MODELS = {
    "preferences": PreferenceJudgment,
    "aspect-scores": AspectScore,
    "personal-ratings": PersonalRating,
    "artifact-flags": ArtifactFlag,
}


def judgments_resting_on(*, items: QuerySet) -> dict[str, int]:
    """How many judgments of each kind point into `items` (projects, prompts, images or
    comparisons), kinds with none left out: what keeps those items from being deleted."""
    ids = items.values("pk")
    if items.model is Project:
        where = {model: Q(project__in=ids) for model in JUDGMENT_MODELS.values()}
    elif items.model is Prompt:
        where = {model: Q(image__prompt__in=ids) for model in JUDGMENT_MODELS.values()}
        where[PreferenceJudgment] = Q(comparison__prompt__in=ids)
    elif items.model is Image:
        where = {model: Q(image__in=ids) for model in JUDGMENT_MODELS.values()}
        where[PreferenceJudgment] = Q(comparison__image_a__in=ids) | Q(comparison__image_b__in=ids)
    elif items.model is Comparison:
        where = {PreferenceJudgment: Q(comparison__in=ids)}
    else:
        raise ValueError(f"judgments rest on projects, prompts, images and comparisons, not {items.model.__name__}")
    counts = {str(model._meta.verbose_name_plural): model.objects.filter(condition).count()
              for model, condition in where.items()}
    return {kind: n for kind, n in counts.items() if n}


def judgment_list_for_user(*, user, project: Project, kind: str) -> QuerySet:
    """Judgments of one kind in the project: an annotator sees only their own, a researcher or
    admin sees every judgment, human and machine."""
    model = JUDGMENT_MODELS[kind]
    judgments = model.objects.filter(project=project).order_by("id")
    if project_role(user=user, project=project) not in MANAGER_ROLES:
        judgments = judgments.filter(Q(annotator=user))
    return judgments


# --- the workspace ------------------------------------------------------------------------

_PAYLOAD_COLUMNS = """p.id, p.text,
       i.id, i.preview_key, i.storage_key, i.width, i.height,
       ia.id, ia.preview_key, ia.storage_key, ia.width, ia.height,
       ib.id, ib.preview_key, ib.storage_key, ib.width, ib.height"""
_PAYLOAD_JOINS = """JOIN annotation_prompt p ON p.id = u.prompt_id
LEFT JOIN annotation_image i ON i.id = u.image_id
LEFT JOIN annotation_comparison c ON c.id = u.comparison_id
LEFT JOIN annotation_image ia ON ia.id = c.image_a_id
LEFT JOIN annotation_image ib ON ib.id = c.image_b_id"""
# PostgreSQL: each lease's unit, prompt and images are fetched by primary key from its own row
# (LATERAL, kept apart by its LIMIT). A plain join let the planner, on stale statistics (a
# project's first leases), merge-join the unit index from its start up to the unit's id: 2 ms at
# 10,000 units and growing with the table, against 0.2 ms.
_PAYLOAD_SQL = {
    "postgresql": f"""SELECT a.id, a.unit_id, a.task_type, a.expires_at, a.left_image_id, x.*
FROM annotation_assignment a
CROSS JOIN LATERAL (SELECT {_PAYLOAD_COLUMNS} FROM annotation_workunit u {_PAYLOAD_JOINS} WHERE u.id = a.unit_id LIMIT 1) x
WHERE a.id IN ({{marks}})""",
    "sqlite": f"""SELECT a.id, a.unit_id, a.task_type, a.expires_at, a.left_image_id, {_PAYLOAD_COLUMNS}
FROM annotation_assignment a JOIN annotation_workunit u ON u.id = a.unit_id {_PAYLOAD_JOINS}
WHERE a.id IN ({{marks}})""",
}


def assignment_payloads(*, assignments) -> list[dict]:
    """What the workspace shows for each lease: the prompt and its image(s), left first for pairs.

    One hand-written query: it runs on every lease, and the ORM spent longer building it than
    the database spent answering."""
    from django.core.files.storage import default_storage
    from django.db import connection

    ids = [a.id for a in assignments]
    if not ids:
        return []
    with connection.cursor() as cursor:
        sql = _PAYLOAD_SQL["postgresql" if connection.vendor == "postgresql" else "sqlite"]
        cursor.execute(sql.format(marks=", ".join(["%s"] * len(ids))), ids)
        rows = {row[0]: row for row in cursor.fetchall()}

    def image(values):
        image_id, preview_key, storage_key, width, height = values
        return {"id": image_id, "preview_url": default_storage.url(preview_key), "url": default_storage.url(storage_key),
                "width": width, "height": height}

    payloads = []
    for assignment_id in ids:
        row = rows[assignment_id]
        _, unit_id, task_type, expires_at, left_image_id, prompt_id, prompt_text = row[:7]
        if row[7] is not None:
            images = [image(row[7:12])]
        else:
            a, b = image(row[12:17]), image(row[17:22])
            images = [a, b] if a["id"] == left_image_id else [b, a]
        if isinstance(expires_at, str):  # SQLite hands back naive UTC, as text or datetime
            expires_at = datetime.fromisoformat(expires_at)
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=dt_timezone.utc)
        payloads.append({"assignment": assignment_id, "unit": unit_id, "task_type": task_type,
                         "expires_at": expires_at, "prompt": {"id": prompt_id, "text": prompt_text}, "images": images})
    return payloads


PROGRESS_POOL_SECONDS = 30


def work_progress(*, project: Project, annotator, task_type: str) -> dict:
    """Today's and all-time counts of the person's live submissions, and the units still wanting
    judgments that this person never had.

    The project-wide count of unfinished units is one scan of the pick index; it is shared
    through the cache for PROGRESS_POOL_SECONDS, since every annotator's page asks after every
    batch. The person's own share is a small indexed count."""
    from django.core.cache import cache
    from django.utils import timezone

    from annotation.models import Assignment, Submission, WorkUnit

    start_of_day = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    mine = Submission.objects.filter(project=project, annotator=annotator, retracted_at__isnull=True,
                                     assignment__task_type=task_type, kind=Submission.Kind.JUDGED)
    unfinished = cache.get_or_set(
        f"work-unfinished:{project.id}:{task_type}:{project.overlap}",
        lambda: WorkUnit.objects.filter(project=project, task_type=task_type, is_gold=False,
                                        done__lt=project.overlap).count(),
        PROGRESS_POOL_SECONDS)
    had = Assignment.objects.filter(annotator=annotator, project=project, task_type=task_type, unit__is_gold=False,
                                    unit__done__lt=project.overlap).count()
    return {"done_today": mine.filter(created_at__gte=start_of_day).count(), "done_total": mine.count(),
            "left_in_project": max(0, unfinished - had)}


def project_progress(*, project: Project) -> dict:
    """The researcher's view: units per task type, judgments per annotator, active leases."""
    import statistics

    from django.db.models import Count, Max, Q
    from django.utils import timezone

    from annotation.models import Assignment, Submission, WorkUnit

    task_types = []
    for task_type in project.task_types:
        units = WorkUnit.objects.filter(project=project, task_type=task_type, is_gold=False)
        complete = Q(done__gte=project.overlap)
        if project.collection == Project.Collection.ADAPTIVE and task_type == "pairwise":
            complete = Q(priority__lt=0)  # adaptive: closed (at the maximum, or at the target past the minimum)
        counts = units.aggregate(total=Count("id"), complete=Count("id", filter=complete))
        judged = Submission.objects.filter(project=project, assignment__task_type=task_type,
                                           kind=Submission.Kind.JUDGED, retracted_at__isnull=True).count()
        task_types.append({"task_type": task_type, "units_total": counts["total"],
                           "units_complete": counts["complete"],
                           "units_remaining": counts["total"] - counts["complete"], "judgments": judged})
    live = Submission.objects.filter(project=project, kind=Submission.Kind.JUDGED, retracted_at__isnull=True)
    annotators = []
    for row in (live.values("annotator_id", "annotator__username")
                .annotate(n=Count("id"), last=Max("created_at")).order_by("-n")):
        latencies = list(live.filter(annotator_id=row["annotator_id"], latency_ms__isnull=False)
                         .order_by("-id").values_list("latency_ms", flat=True)[:1000])
        annotators.append({"username": row["annotator__username"], "judgments": row["n"],
                           "median_ms": statistics.median(latencies) if latencies else None, "last_at": row["last"]})
    active = Assignment.objects.filter(project=project, status=Assignment.Status.ACTIVE,
                                       expires_at__gt=timezone.now()).count()
    from annotation.adaptive_collection import adaptive_progress

    return {"task_types": task_types, "annotators": annotators, "active_leases": active,
            "overlap_warning": _overlap_warning(project), "adaptive": adaptive_progress(project)}


def _overlap_warning(project: Project) -> str:
    """Why units can never complete, when the overlap asks for more judgments per unit than the
    project has active annotators (each person judges a unit once); "" otherwise."""
    from annotation.models import Membership

    people = Membership.objects.filter(project=project, role=Membership.Role.ANNOTATOR,
                                       status=Membership.Status.ACTIVE).count()
    if project.overlap <= people:
        return ""
    return (f"Each unit wants {project.overlap} judgments from different annotators, but the project has "
            f"{people} active annotator{'' if people == 1 else 's'}: no unit can complete, and what is remaining "
            f"is more than they can take. Invite more annotators or lower the overlap in the settings.")


# --- campaign pages (home, imports) --------------------------------------------------------

def project_unit_counts(*, project: Project) -> dict:
    """Units to judge in the project (gold left out) and how many have all the judgments they
    want (`overlap`): one aggregate over the project's units, for its card on the home page."""
    from django.db.models import Count

    from annotation.models import WorkUnit

    counts = WorkUnit.objects.filter(project=project, is_gold=False).aggregate(
        total=Count("id"), complete=Count("id", filter=Q(done__gte=project.overlap)))
    return {"units_total": counts["total"], "units_complete": counts["complete"]}


def import_job_list(*, project: Project) -> QuerySet[ImportJob]:
    """The project's import jobs, newest first (callers checked the user manages the project)."""
    return ImportJob.objects.filter(project=project).select_related("created_by").order_by("-id")


def import_line_errors(*, job: ImportJob) -> QuerySet:
    """The lines an import rejected, in manifest order, each with the field at fault and why."""
    from annotation.models import ImportLineError

    return ImportLineError.objects.filter(job=job).order_by("line", "id")


# --- people: invitations and the members page -------------------------------------------------

def invitation_unusable_reason(*, invitation) -> str:
    """Why `invitation` cannot be accepted now: "revoked", "expired" or "used_up"; "" when it can."""
    from django.utils import timezone

    if invitation.revoked_at is not None:
        return "revoked"
    if invitation.expires_at <= timezone.now():
        return "expired"
    if invitation.uses >= invitation.max_uses:
        return "used_up"
    return ""


def invitation_list(*, project: Project) -> QuerySet:
    """The project's invitations, newest first: for its researchers and admins, who reach it through
    `project_get_for_user(manage=True)`."""
    from annotation.models import Invitation

    return Invitation.objects.filter(project=project).select_related("created_by", "project").order_by("-id")


def invitation_get_for_user(*, user, slug: str, invitation_id: int):
    """One invitation of project `slug`, for the project's researchers and admins (Http404 /
    PermissionDenied as `project_get_for_user(manage=True)` decides)."""
    project = project_get_for_user(user=user, slug=slug, manage=True)
    found = invitation_list(project=project).filter(pk=invitation_id).first()
    if found is None:
        raise Http404(f"No invitation {invitation_id} in project {slug!r}.")
    return found


def invitation_by_token(*, token: str):
    """The invitation with `token` (anyone holding the link may see its project and role); Http404
    when there is none."""
    from annotation.models import Invitation

    found = Invitation.objects.select_related("project", "created_by").filter(token=token).first() if token else None
    if found is None:
        raise Http404("No such invitation: check that the link was copied whole.")
    return found


def invitation_by_code(*, code: str):
    """The invitation whose join code is `code` (any case, spaces and dashes ignored); None when
    there is none."""
    from annotation.models import Invitation

    normalised = re.sub(r"[\s-]", "", code or "").upper()
    if not normalised:
        return None
    return Invitation.objects.select_related("project").filter(code=normalised).first()


def member_judgment_counts(*, project: Project) -> dict[int, int]:
    """Live judged submissions (one per key press, whatever the task type) per member's user id."""
    from django.db.models import Count

    from annotation.models import Submission

    rows = (Submission.objects.filter(project=project, kind=Submission.Kind.JUDGED, retracted_at__isnull=True)
            .values("annotator_id").annotate(n=Count("id")).order_by())
    return {row["annotator_id"]: row["n"] for row in rows}


# --- crowd-platform studies -----------------------------------------------------------------

def study_link_list(*, project: Project) -> QuerySet:
    """The project's study links, newest first, each with its number of participants: for its
    researchers and admins, who reach it through `project_get_for_user(manage=True)`."""
    from django.db.models import Count

    from annotation.models import StudyLink

    return (StudyLink.objects.filter(project=project).select_related("created_by", "project")
            .annotate(participant_count=Count("participants")).order_by("-id"))


def study_link_get_for_user(*, user, slug: str, link_id: int):
    """One study link of project `slug`, for the project's researchers and admins (Http404 /
    PermissionDenied as `project_get_for_user(manage=True)` decides)."""
    project = project_get_for_user(user=user, slug=slug, manage=True)
    found = study_link_list(project=project).filter(pk=link_id).first()
    if found is None:
        raise Http404(f"No study link {link_id} in project {slug!r}.")
    return found


def study_link_url(*, request, link) -> str:
    """The link to post on the platform, absolute when there is a `request`, with the platform's
    placeholders for its own parameters (Prolific fills in `{{%PROLIFIC_PID%}}` and the others)."""
    from django.urls import reverse

    from annotation.models import StudyLink

    path = reverse("study-join", kwargs={"token": link.token})
    base = request.build_absolute_uri(path) if request is not None else path
    if link.platform == StudyLink.Platform.PROLIFIC:
        return base + "?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
    return base + "?participant_id=PARTICIPANT_ID"


def study_link_by_token(*, token: str):
    """The study link with `token`, with its project; Http404 when there is none."""
    from annotation.models import StudyLink

    found = StudyLink.objects.select_related("project").filter(token=token).first() if token else None
    if found is None:
        raise Http404("No such study link: check that the link was copied whole.")
    return found


def study_participant_get_for_user(*, user, slug: str, link_id: int, participant_id: int):
    """One participant (by the row's id, never the platform's) of a study link, for the project's
    researchers and admins."""
    link = study_link_get_for_user(user=user, slug=slug, link_id=link_id)
    found = link.participants.select_related("link__project", "user").filter(pk=participant_id).first()
    if found is None:
        raise Http404(f"No participant {participant_id} in study link {link_id}.")
    return found


def study_participant_rows(*, link, participants=None) -> list[dict]:
    """Each of `participants` (default: every participant of `link`, in the order they came) with
    what the researcher's page and API show: the participant (platform ids included), their
    pseudonym, units judged and held, time spent (from opening the link to their last live judgment:
    judgments arrive in batches, so first-to-last judgment reads 0 s for a quick participant) and status
    (working, completed or rejected)."""
    from django.db.models import Count, Max, Min

    from annotation.models import AnnotatorProfile, Assignment, Submission

    if participants is None:
        participants = link.participants.order_by("id")
    participants = list(participants)
    users = [p.user_id for p in participants]
    counts: dict[tuple[int, str], int] = {}
    for row in (Assignment.objects.filter(project_id=link.project_id, task_type=link.task_type, annotator_id__in=users,
                                          status__in=[Assignment.Status.COMPLETED, Assignment.Status.ACTIVE])
                .values("annotator_id", "status").annotate(n=Count("id")).order_by()):
        counts[(row["annotator_id"], row["status"])] = row["n"]
    spans = {row["annotator_id"]: (row["first"], row["last"]) for row in (
        Submission.objects.filter(project_id=link.project_id, annotator_id__in=users, kind=Submission.Kind.JUDGED,
                                  retracted_at__isnull=True, assignment__task_type=link.task_type)
        .values("annotator_id").annotate(first=Min("created_at"), last=Max("created_at")).order_by())}
    pseudonyms = dict(AnnotatorProfile.objects.filter(user_id__in=users).values_list("user_id", "pseudonym"))
    rows = []
    for participant in participants:
        first, last = spans.get(participant.user_id, (None, None))
        status = ("rejected" if participant.rejected_at else "completed" if participant.completed_at else "working")
        rows.append({
            "participant": participant, "pseudonym": pseudonyms.get(participant.user_id),
            "judged": counts.get((participant.user_id, Assignment.Status.COMPLETED), 0),
            "held": counts.get((participant.user_id, Assignment.Status.ACTIVE), 0),
            "first_judgment_at": first, "last_judgment_at": last,
            "seconds_spent": (last - participant.started_at).total_seconds() if last else 0.0, "status": status,
        })
    return rows
