from celery import shared_task

from annotation.models import ImportJob
from annotation.services import import_job_run


@shared_task(name="annotation.import_job_run", acks_late=True)
def import_job_run_task(job_id: int) -> None:
    job = ImportJob.objects.select_related("project").filter(pk=job_id).first()
    if job is not None:
        import_job_run(job=job)
