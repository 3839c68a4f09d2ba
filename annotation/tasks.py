from celery import shared_task

from annotation.services import import_job_finish, import_job_run
from core.tasks import JobTask


@shared_task(name="annotation.import_job_run", base=JobTask, job_model="annotation.ImportJob", acks_late=True)
def import_job_run_task(job_id: int) -> None:
    import_job_run(job_id=job_id)


@shared_task(name="annotation.import_job_finish", acks_late=True)
def import_job_finish_task(job_id: int) -> None:
    import_job_finish(job_id=job_id)
