from celery import shared_task

from core.tasks import JobTask
from curation.exports.services import dataset_export_build, dataset_export_cleanup
from curation.services import filter_run_execute


@shared_task(name="curation.filter_run_execute", base=JobTask, job_model="curation.FilterRun", acks_late=True)
def filter_run_execute_task(run_id: int) -> None:
    filter_run_execute(run_id=run_id)


@shared_task(name="curation.dataset_export_build", base=JobTask, job_model="curation.DatasetExport", acks_late=True)
def dataset_export_build_task(export_id: int) -> None:
    dataset_export_build(export_id=export_id)


@shared_task(name="curation.dataset_export_cleanup", acks_late=True)
def dataset_export_cleanup_task(export_id: int) -> None:
    dataset_export_cleanup(export_id=export_id)
