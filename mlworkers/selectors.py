"""Reads for machine annotators and jobs, and who may see or run them."""
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.utils import timezone

from annotation.models import MachineAnnotator
from annotation.selectors import project_role, user_is_platform_admin
from mlworkers.backends.base import BackendError, backend_class
from mlworkers.models import AutoAnnotationJob


def require_platform_admin(user) -> None:
    if not user_is_platform_admin(user):
        raise PermissionDenied("Machine annotators are managed by platform admins.")


def require_project_admin(*, user, project) -> None:
    if project_role(user=user, project=project) != "admin":
        raise PermissionDenied(f"Auto-annotation on {project.slug!r} is for the project's admins.")


def machine_annotator_get(*, user, annotator_id: int) -> MachineAnnotator:
    require_platform_admin(user)
    annotator = MachineAnnotator.objects.filter(pk=annotator_id).first()
    if annotator is None:
        raise Http404(f"No machine annotator {annotator_id}.")
    return annotator


def auto_job_get_for_user(*, user, job_id: int) -> AutoAnnotationJob:
    job = AutoAnnotationJob.objects.select_related("project", "machine_annotator").filter(pk=job_id).first()
    if job is None or project_role(user=user, project=job.project) != "admin":
        raise Http404(f"No auto-annotation job {job_id} that you can see.")
    return job


def auto_job_progress(*, job: AutoAnnotationJob) -> dict:
    """Done, failed, total, rate (items/s since start) and the seconds left at that rate."""
    finished = job.items_done + job.items_failed
    elapsed = ((job.finished_at or timezone.now()) - job.started_at).total_seconds() if job.started_at else 0
    rate = finished / elapsed if elapsed > 0 else 0.0
    left = max(0, job.items_total - finished)
    return {"done": job.items_done, "failed": job.items_failed, "total": job.items_total,
            "rate_per_s": round(rate, 2),
            "seconds_left": round(left / rate) if rate and job.status in AutoAnnotationJob.ACTIVE else None}


def annotator_scores_overall(annotator: MachineAnnotator) -> bool:
    """Whether this annotator's score jobs give one overall value per image (PickScore, HPS v2),
    so that a score job may ask it "overall", the project's pairwise question."""
    try:
        return backend_class(annotator.backend).scored_aspect(annotator.parameters) == "overall"
    except BackendError:
        return False
