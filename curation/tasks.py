from celery import shared_task

from curation.services import filter_run_execute


@shared_task(name="curation.filter_run_execute", acks_late=True)
def filter_run_execute_task(run_id: int) -> None:
    filter_run_execute(run_id=run_id)
