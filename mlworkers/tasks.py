"""Celery tasks: thin wrappers that take ids and call `mlworkers.services`.

Planning runs on the default queue; chunks run on the `gpu` queue, whose workers run with
prefetch 1 and late acks and keep each loaded model for later chunks."""
from celery import shared_task

from mlworkers import services


@shared_task(name="mlworkers.auto_job_start", acks_late=True)
def auto_job_start_task(job_id: int) -> None:
    for item_ids in services.auto_job_start(job_id=job_id):
        auto_job_chunk_task.delay(job_id, item_ids)


@shared_task(name="mlworkers.auto_job_chunk", acks_late=True)
def auto_job_chunk_task(job_id: int, item_ids: list[int]) -> None:
    services.auto_job_run_chunk(job_id=job_id, item_ids=item_ids)
