"""The reaper, and the Celery task base that fails a job whose task raised (the safety net
behind each kind's own error handling)."""
from celery import Task, shared_task
from django.apps import apps

from core.jobs import job_fail_unexpected, jobs_reap


class JobTask(Task):
    """A task whose first argument is the id of a `job_model` ("app_label.Model") job."""

    job_model = ""

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        job_id = args[0] if args else kwargs.get("job_id")
        if self.job_model and job_id is not None:
            job_fail_unexpected(model=apps.get_model(self.job_model), pk=job_id, exc=exc)


@shared_task(name="core.jobs_reap", ignore_result=True)
def jobs_reap_task() -> dict[str, int]:
    return jobs_reap()
