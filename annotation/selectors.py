"""Reads with logic in them, and the one place access to a project is decided."""
from django.db.models import Q, QuerySet
from rest_framework.exceptions import NotFound, PermissionDenied

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
    """The project `slug` if `user` may see it, else NotFound (never revealing that it exists);
    with `manage`, PermissionDenied unless the user is a researcher or admin of it."""
    project = Project.objects.filter(slug=slug).first()
    role = project_role(user=user, project=project) if project else None
    if project is None or role is None:
        raise NotFound(f"No project {slug!r} that you can see.")
    if manage and role not in MANAGER_ROLES:
        raise PermissionDenied(f"Managing project {slug!r} needs the researcher or admin role.")
    return project


def prompt_list(*, project: Project) -> QuerySet[Prompt]:
    return Prompt.objects.filter(project=project).order_by("id")


def image_list(*, project: Project) -> QuerySet[Image]:
    return Image.objects.filter(project=project).order_by("id")


def comparison_list(*, project: Project) -> QuerySet[Comparison]:
    return Comparison.objects.filter(project=project).order_by("id")


def import_job_get_for_user(*, user, job_id: int) -> ImportJob:
    job = ImportJob.objects.select_related("project").filter(pk=job_id).first()
    if job is None:
        raise NotFound(f"No import job {job_id} that you can see.")
    role = project_role(user=user, project=job.project)
    if role not in MANAGER_ROLES:
        raise NotFound(f"No import job {job_id} that you can see.")
    return job


JUDGMENT_MODELS = {
    "preferences": PreferenceJudgment,
    "aspect-scores": AspectScore,
    "personal-ratings": PersonalRating,
    "artifact-flags": ArtifactFlag,
}


def judgment_list_for_user(*, user, project: Project, kind: str) -> QuerySet:
    """Judgments of one kind in the project: an annotator sees only their own, a researcher or
    admin sees every judgment, human and machine."""
    model = JUDGMENT_MODELS[kind]
    judgments = model.objects.filter(project=project).order_by("id")
    if project_role(user=user, project=project) not in MANAGER_ROLES:
        judgments = judgments.filter(Q(annotator=user))
    return judgments
