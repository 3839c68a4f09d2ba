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


class AuditAction(models.TextChoices):
    ROLE_CHANGED = "role_changed", "Role changed"
    MEMBER_ADDED = "member_added", "Member added"
    MEMBER_REMOVED = "member_removed", "Member removed"
    SUSPENDED = "suspended", "Suspended"
    REINSTATED = "reinstated", "Reinstated"
    DELETED = "deleted", "Deleted"
    ARCHIVED = "archived", "Archived"
    JOB_STARTED = "job_started", "Job started"
    JOB_CANCELLED = "job_cancelled", "Job cancelled"
    INVITATION_CREATED = "invite_created", "Invitation created"
    INVITATION_REVOKED = "invite_revoked", "Invitation revoked"
    INVITATION_ACCEPTED = "invite_accepted", "Invitation accepted"
    STUDY_LINK_CREATED = "study_created", "Study link created"
    STUDY_LINK_DEACTIVATED = "study_closed", "Study link deactivated"
    PARTICIPANT_REJECTED = "rejected", "Study participant rejected"


class AuditEntry(models.Model):
    """Who changed roles, people's standing, data or jobs, and when; written only by
    `core.audit.audit_record`, never changed.

    The project is kept by id and slug, not by a foreign key: an entry outlives its project (the
    deletion of a project is itself an entry), and `core` depends on no domain app. The actor's
    name is kept beside the link for the same reason."""

    Action = AuditAction

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+", help_text="Empty when the platform acted (a command, a task).")
    actor_username = models.CharField(max_length=150, blank=True)
    project_ref = models.BigIntegerField(null=True, blank=True, help_text="The project's id, kept after it is deleted.")
    project_slug = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=16, choices=AuditAction.choices)
    target = models.CharField(max_length=300, help_text="What was acted on, in words.")
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["project_ref", "-id"], name="audit_project_idx")]

    def __str__(self):
        return f"{self.action} {self.target} by {self.actor_username or 'the platform'}"
