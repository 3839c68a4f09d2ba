from celery import shared_task

from curation.exports.services import dataset_export_build
from curation.services import filter_run_execute


@shared_task(name="curation.filter_run_execute", acks_late=True)
def filter_run_execute_task(run_id: int) -> None:
    filter_run_execute(run_id=run_id)


@shared_task(name="curation.dataset_export_build", acks_late=True)
def dataset_export_build_task(export_id: int) -> None:
    dataset_export_build(export_id=export_id)
