"""Celery tasks: thin wrappers that take ids and call `mlworkers.runner`.

Planning runs on the default queue; chunks run on the `gpu` queue, whose workers run with
prefetch 1 and late acks and keep each loaded model for later chunks."""
from celery import Task, shared_task

from core.tasks import JobTask
from mlworkers import runner


class ChunkTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        if args:
            runner.auto_job_chunk_crashed(chunk_id=args[0], exc=exc)


@shared_task(name="mlworkers.auto_job_start", base=JobTask, job_model="mlworkers.AutoAnnotationJob", acks_late=True)
def auto_job_start_task(job_id: int) -> None:
    runner.auto_job_start(job_id=job_id)


@shared_task(name="mlworkers.auto_job_chunk", base=ChunkTask, acks_late=True)
def auto_job_chunk_task(chunk_id: int) -> None:
    runner.auto_job_run_chunk(chunk_id=chunk_id)


@shared_task(name="mlworkers.auto_job_chunks_reap", ignore_result=True)
def auto_job_chunks_reap_task() -> int:
    return runner.auto_job_chunks_reap()
