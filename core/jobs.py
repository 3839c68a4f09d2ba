"""Services of the job lifecycle shared by every background job (see `core.models.Job`).

A worker *claims* a job and gets a `JobLease`: the job's attempt number, which fences its writes
(a worker given up for dead and replaced writes nothing more). While it works it *beats*: a
thread writes the heartbeat every JOB_HEARTBEAT_SECONDS, and `lease.beat(**progress)` writes
progress and answers a cancel. It ends the job with `succeed`, `fail` or `cancelled`.

The reaper (`jobs_reap`, run by Celery beat) requeues a running job whose heartbeat went stale,
or fails it once JOB_MAX_ATTEMPTS workers were lost on it, and ends a `cancelling` job whose
worker is gone. `job_cancel` works with no worker alive.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from celery import current_app
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.db.models import Q
from django.utils import timezone

from core.audit import audit_record
from core.models import AuditAction, Job, JobStatus

log = logging.getLogger(__name__)
S = JobStatus


class JobCancelled(Exception):
    """A cancel was asked: the worker stops, cleans up what it staged and calls `lease.cancelled`."""


class JobLost(Exception):
    """The job is no longer this worker's (taken over after it looked dead, or ended meanwhile)."""


def stale_before(now=None):
    """Heartbeats older than this belong to a worker that died."""
    return (now or timezone.now()) - timedelta(seconds=settings.JOB_STALE_AFTER_SECONDS)


def is_alive(job: Job, now=None) -> bool:
    """Whether the job's worker gave a sign of life recently."""
    return job.worker_alive(stale_before(now))


def job_models() -> list[type[Job]]:
    return [m for m in apps.get_models() if issubclass(m, Job)]


def label(job: Job) -> str:
    return f"{job._meta.verbose_name} {job.pk}"


# --- a worker's hold on a job ----------------------------------------------------------------

@dataclass(frozen=True)
class JobLease:
    model: type[Job]
    pk: int
    attempt: int
    job: Job  # as claimed

    def _mine(self):
        return self.model.objects.filter(pk=self.pk, attempts=self.attempt)

    def beat(self, **fields) -> None:
        """Write the heartbeat and `fields` (progress). Raises JobCancelled when a cancel was asked
        (the fields are written all the same), JobLost when the job is no longer this worker's."""
        now = timezone.now()
        if self._mine().filter(status=S.RUNNING).update(heartbeat_at=now, **fields):
            return
        if self._mine().filter(status=S.CANCELLING).update(heartbeat_at=now, **fields):
            raise JobCancelled()
        raise JobLost()

    def _end(self, status: str, message: str, **fields) -> bool:
        now = timezone.now()
        ended = self._mine().filter(status__in=(S.RUNNING, S.CANCELLING)).update(
            status=status, message=message[:2000], finished_at=now, heartbeat_at=now, **fields)
        if not ended:
            log.warning("%s: not ended %s by attempt %s (taken over or ended meanwhile)",
                        label(self.job), status, self.attempt)
        return bool(ended)

    def succeed(self, message: str = "", **fields) -> bool:
        return self._end(S.SUCCEEDED, message, **fields)

    def fail(self, message: str, **fields) -> bool:
        log.warning("%s failed: %s", label(self.job), message)
        return self._end(S.FAILED, message, **fields)

    def cancelled(self, message: str = "cancelled", **fields) -> bool:
        return self._end(S.CANCELLED, message, **fields)

    @contextmanager
    def running(self) -> Iterator[JobLease]:
        """Beat in the background while the body runs. An unexpected exception fails the job with
        its text and is raised again (the worker's log keeps the traceback); JobLost ends the body
        quietly. JobCancelled is the caller's to handle (it knows what to clean up)."""
        with heartbeat(lambda: self._mine().filter(status__in=(S.RUNNING, S.CANCELLING))
                       .update(heartbeat_at=timezone.now())):
            try:
                yield self
            except JobCancelled:
                raise
            except JobLost:
                log.warning("%s was taken over by another worker; attempt %s stops", label(self.job), self.attempt)
            except Exception as exc:
                self.fail(unexpected_error_text(exc))
                raise


def unexpected_error_text(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(exc.messages)
    if isinstance(exc, ModuleNotFoundError):
        return (f"this worker cannot import {exc.name or 'a module'} ({exc}); install what it needs "
                f"(the `ml` extra for model backends) and start the job again")
    text = str(exc).strip() or "no message"
    return f"stopped by an unexpected error, {exc.__class__.__name__}: {text}. The worker's log has the details."


@contextmanager
def heartbeat(write: Callable[[], object], interval: float | None = None) -> Iterator[None]:
    """Call `write` every `interval` seconds (JOB_HEARTBEAT_SECONDS) on a thread while the body runs.

    Not inside a transaction: a beat would wait on the caller's own row locks (and could never be
    seen before the caller commits anyway)."""
    if connection.in_atomic_block:
        yield
        return
    interval = settings.JOB_HEARTBEAT_SECONDS if interval is None else interval
    stop = threading.Event()

    def beat():
        try:
            while not stop.wait(interval):
                try:
                    write()
                except DatabaseError as exc:  # a busy database delays a beat; the next one retries
                    log.warning("heartbeat not written: %s", exc)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name="job-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def job_claim(model: type[Job], pk: int) -> JobLease | None:
    """Take a queued job for this worker, or take over a running one whose worker went silent.

    Returns None when there is nothing to do: the job is gone, finished, cancelling, or running
    with a live worker (a second delivery of its task). A silent job that already used
    JOB_MAX_ATTEMPTS workers is failed instead of being tried again."""
    now = timezone.now()
    with transaction.atomic():
        job = model.objects.select_for_update().filter(pk=pk).first()
        if job is None:
            return None
        taking_over = (job.status == S.RUNNING and not is_alive(job, now)
                       and model.objects.filter(model.lost_filter(), pk=pk).exists())
        if job.status != S.QUEUED and not taking_over:
            return None
        if taking_over and job.attempts >= settings.JOB_MAX_ATTEMPTS:
            _worker_lost(job, now)
            return None
        job.status, job.attempts, job.heartbeat_at = S.RUNNING, job.attempts + 1, now
        job.started_at = job.started_at or now
        job.message = (f"taken over after its worker was lost (attempt {job.attempts} of "
                       f"{settings.JOB_MAX_ATTEMPTS})") if job.attempts > 1 else ""
        job.save(update_fields=["status", "attempts", "heartbeat_at", "started_at", "message"])
    return JobLease(model=model, pk=pk, attempt=job.attempts, job=job)


def _worker_lost(job: Job, now) -> None:
    """Caller holds the row lock."""
    seen = timezone.localtime(job.heartbeat_at).strftime("%Y-%m-%d %H:%M:%S") if job.heartbeat_at else "never"
    job.status, job.finished_at = S.FAILED, now
    job.message = (f"worker lost: {job.attempts} worker(s) stopped while running this job (last sign of life "
                   f"{seen}); the job may be killing its worker (memory?). Start it again once that is fixed")
    job.save(update_fields=["status", "finished_at", "message"])
    log.warning("%s: %s", label(job), job.message)
    _enqueue(job.cleanup_task, job)  # what the dead attempts staged


# --- what people and the reaper do ------------------------------------------------------------

def _enqueue(task_name: str | None, job: Job) -> None:
    if task_name:
        transaction.on_commit(lambda: current_app.send_task(task_name, args=[job.pk]))


@transaction.atomic
def job_cancel(*, job: Job, actor=None) -> Job:
    """Cancel a job in any state but a finished one, with or without a live worker, as `actor`
    (recorded in the audit log; None: the platform itself).

    A queued job, or one whose worker is gone, ends `cancelled` at once (what a dead worker staged
    is cleaned up by the kind's cleanup task, on the next worker). A job with a live worker turns
    `cancelling`: the worker stops at its next checkpoint and cleans up itself."""
    model = type(job)
    job = model.objects.select_for_update().get(pk=job.pk)
    now = timezone.now()
    if job.status == S.QUEUED:
        _end_cancelled(job, now, "cancelled before it started")
    elif job.status in (S.RUNNING, S.CANCELLING):
        if is_alive(job, now):
            job.status, job.message = S.CANCELLING, "cancelling: the worker stops at its next checkpoint"
            job.save(update_fields=["status", "message"])
        else:
            _end_cancelled(job, now, "cancelled; its worker had stopped")
    else:
        raise ValidationError({"status": f"{label(job)} has already {job.status}; only a queued or running job "
                                         f"can be cancelled"})
    audit_record(actor=actor, action=AuditAction.JOB_CANCELLED, project=getattr(job, "project", None),
                 target=label(job), details={"status": job.status})
    return job


def _end_cancelled(job: Job, now, message: str) -> None:
    """Caller holds the row lock."""
    job.status, job.finished_at, job.message = S.CANCELLED, now, message
    job.save(update_fields=["status", "finished_at", "message"])
    _enqueue(job.cleanup_task, job)


@transaction.atomic
def job_requeue(*, job: Job, message: str = "") -> Job:
    """Queue a finished job to run again (a resume) and send its task after commit."""
    model = type(job)
    job = model.objects.select_for_update().get(pk=job.pk)
    if not job.is_finished:
        raise ValidationError({"status": f"{label(job)} is already {job.status}"})
    job.status, job.message, job.finished_at, job.attempts = S.QUEUED, message, None, 0
    job.save(update_fields=["status", "message", "finished_at", "attempts"])
    _enqueue(job.run_task, job)
    return job


def job_fail_unexpected(*, model: type[Job], pk: int, exc: BaseException) -> bool:
    """Celery's failure path, the safety net: a task of `model` raised. Fails the job unless it
    ended already or a live worker holds it (a second delivery that crashed is not its owner)."""
    with transaction.atomic():
        job = model.objects.select_for_update().filter(pk=pk).first()
        if job is None or job.is_finished or (job.status != S.QUEUED and is_alive(job)):
            return False
        job.status, job.finished_at, job.message = S.FAILED, timezone.now(), unexpected_error_text(exc)
        job.save(update_fields=["status", "finished_at", "message"])
    log.warning("%s failed: %s", label(job), job.message)
    return True


def jobs_reap(*, now=None) -> dict[str, int]:
    """Find jobs whose worker went silent: requeue a running one (or fail it after
    JOB_MAX_ATTEMPTS), end a cancelling one. Returns how many jobs of each kind were touched."""
    close_old_connections()
    now = now or timezone.now()
    touched: dict[str, int] = {}
    silent = Q(heartbeat_at__lt=stale_before(now)) | Q(heartbeat_at__isnull=True)
    for model in job_models():
        lost = model.objects.filter(silent, model.lost_filter(), status=S.RUNNING).values_list("pk", flat=True)
        quiet = model.objects.filter(silent, status=S.CANCELLING).values_list("pk", flat=True)
        for pk in lost:
            touched[model._meta.label] = touched.get(model._meta.label, 0) + _reap_lost(model, pk, now)
        for pk in quiet:
            with transaction.atomic():
                job = model.objects.select_for_update().get(pk=pk)
                if job.status == S.CANCELLING and not is_alive(job, now):
                    _end_cancelled(job, now, "cancelled; its worker stopped before it could clean up")
                    touched[model._meta.label] = touched.get(model._meta.label, 0) + 1
    return touched


def _reap_lost(model, pk, now) -> int:
    with transaction.atomic():
        job = model.objects.select_for_update().get(pk=pk)
        if job.status != S.RUNNING or is_alive(job, now):
            return 0
        if job.attempts >= settings.JOB_MAX_ATTEMPTS:
            _worker_lost(job, now)
            return 1
        # Queued again, the job is claimed afresh by whichever worker takes the task (a late
        # redelivery of the old message finds it running with a live heartbeat and does nothing).
        job.status = S.QUEUED
        job.message = (f"its worker stopped; queued again (attempt {job.attempts + 1} of "
                       f"{settings.JOB_MAX_ATTEMPTS})")
        job.save(update_fields=["status", "message"])
        _enqueue(job.run_task, job)
        log.warning("%s: %s", label(job), job.message)
    return 1
