from celery import shared_task

from annotation.services import import_job_finish, import_job_run
from core.tasks import JobTask


@shared_task(name="annotation.import_job_run", base=JobTask, job_model="annotation.ImportJob", acks_late=True)
def import_job_run_task(job_id: int) -> None:
    import_job_run(job_id=job_id)


@shared_task(name="annotation.import_job_finish", acks_late=True)
def import_job_finish_task(job_id: int) -> None:
    import_job_finish(job_id=job_id)


@shared_task(name="annotation.adaptive_refresh", acks_late=True)
def adaptive_refresh_task(project_id: int) -> dict:
    """Refit an adaptive project's reliabilities and recompute its units' priorities (off the request path)."""
    from annotation.adaptive_collection import adaptive_refresh

    return adaptive_refresh(project_id=project_id)


@shared_task(name="annotation.adaptive_refresh_all", acks_late=True)
def adaptive_refresh_all_task() -> None:
    """Beat: queue a refresh of every adaptive project."""
    from annotation.adaptive_collection import adaptive_refresh_due

    for project_id in adaptive_refresh_due():
        adaptive_refresh_task.delay(project_id)
