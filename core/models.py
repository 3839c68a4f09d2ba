"""The lifecycle every background job shares (imports, auto-annotation jobs, filter runs,
dataset exports): one abstract model, written only through `core.jobs`.

    queued ──> running ──> succeeded | failed
       │          │
       │          └──> cancelling ──> cancelled
       └──> cancelled

A running job's worker writes `heartbeat_at` every JOB_HEARTBEAT_SECONDS; a job whose heartbeat
is older than JOB_STALE_AFTER_SECONDS lost its worker and is taken over (`attempts` counts the
workers that claimed it, and fences the writes of one that was given up for dead).
"""
from django.conf import settings
from django.db import models
from django.db.models import Q


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLING = "cancelling", "Cancelling"
    CANCELLED = "cancelled", "Cancelled"


class Job(models.Model):
    Status = JobStatus
    ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.CANCELLING)
    FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)

    # What the reaper sends to run the job again (a Celery task name taking the job's id), and
    # what is sent when a job ends without its worker (cancelled, or failed as "worker lost") to
    # clean up after it (None: nothing to do).
    run_task: str = ""
    cleanup_task: str | None = None

    status = models.CharField(max_length=12, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    message = models.TextField(blank=True, help_text="What happened, in words a person can act on.")
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Workers that have claimed this job.")
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="The running worker's last sign of life.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-id"]

    @classmethod
    def lost_filter(cls) -> Q:
        """Which running jobs with a silent heartbeat the reaper may take for lost (a kind whose
        work runs in separate tasks narrows this and watches those tasks itself)."""
        return Q()

    def worker_alive(self, since) -> bool:
        """Whether a worker working on this job gave a sign of life after `since`."""
        return self.heartbeat_at is not None and self.heartbeat_at >= since

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED
