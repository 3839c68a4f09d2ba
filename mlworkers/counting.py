"""Counting a chunk's items on its job while the judge answers, so the job's page moves within a chunk.

A chunk's row keeps what it has counted into its job (`items_done`, `items_failed`). Every write
sets the chunk's counts and moves the job's counters by the difference (F() increments), in one
transaction fenced by the attempt running the chunk. So each item of a chunk is counted at most
once, whatever happens: an attempt taken for dead writes nothing more, and what it counted is
taken back when the chunk is queued or claimed again (its answers were never stored: a chunk
stores them when it ends, with its final counts). Hence done + failed <= total, which the
database also checks (`autojob_counted_within_total`).
"""
import logging
import time
from collections.abc import Callable, Hashable, Sequence

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from mlworkers.models import AutoAnnotationChunk, AutoAnnotationJob

log = logging.getLogger(__name__)
Chunk, Job = AutoAnnotationChunk, AutoAnnotationJob
COUNTING = (Job.Status.RUNNING, Job.Status.CANCELLING)  # a finished job's counters stay as they ended


def attempt_row(chunk):
    """The chunk's row while this attempt still runs it (a worker taken for dead writes nothing)."""
    return Chunk.objects.filter(pk=chunk.pk, attempts=chunk.attempts, status=Chunk.Status.RUNNING)


def chunk_count(chunk, *, done: int, failed: int, **chunk_fields) -> bool:
    """Record that this attempt of `chunk` has `done` and `failed` items so far (and `chunk_fields`,
    say its end), moving its job's counters by the difference. False, writing nothing, when the
    attempt no longer runs the chunk."""
    with transaction.atomic():
        counted = attempt_row(chunk).select_for_update().values_list("items_done", "items_failed").first()
        if counted is None:
            return False
        attempt_row(chunk).update(items_done=done, items_failed=failed, heartbeat_at=timezone.now(), **chunk_fields)
        if (done, failed) != counted:
            Job.objects.filter(pk=chunk.job_id, status__in=COUNTING).update(
                items_done=F("items_done") + (done - counted[0]),
                items_failed=F("items_failed") + (failed - counted[1]))
    return True


def chunk_uncount(chunk) -> None:
    """Take back what a lost attempt of `chunk` counted, before the chunk is run again. Caller holds
    the chunk's row lock, inside a transaction; `chunk` is that row."""
    if not (chunk.items_done or chunk.items_failed):
        return
    Job.objects.filter(pk=chunk.job_id, status__in=COUNTING).update(
        items_done=F("items_done") - chunk.items_done, items_failed=F("items_failed") - chunk.items_failed)
    chunk.items_done = chunk.items_failed = 0
    Chunk.objects.filter(pk=chunk.pk).update(items_done=0, items_failed=0)


class ChunkTally:
    """The items of a running chunk answered so far, given to a backend as its `progress`: an item
    is done when any of its aspects was answered, failed otherwise. Writes the counts on the job at
    most every AUTO_JOB_PROGRESS_SECONDS; a write that fails (a busy database) waits for the next."""

    def __init__(self, chunk, *, item_of: Callable[[object], Hashable]):
        self.chunk, self.item_of = chunk, item_of
        self.answered: dict[Hashable, bool] = {}
        self.every = settings.AUTO_JOB_PROGRESS_SECONDS
        self.written_at = time.monotonic()
        self.lost = False

    @property
    def done(self) -> int:
        return sum(self.answered.values())

    @property
    def failed(self) -> int:
        return len(self.answered) - sum(self.answered.values())

    def __call__(self, results: Sequence) -> None:
        for result in results:
            item = self.item_of(result)
            self.answered[item] = self.answered.get(item, False) or not result.failed
        if not self.lost and time.monotonic() - self.written_at >= self.every:
            self.written_at = time.monotonic()
            try:
                self.lost = not chunk_count(self.chunk, done=self.done, failed=self.failed)
            except DatabaseError as exc:
                log.warning("auto job chunk %s: progress not written: %s", self.chunk.pk, exc)
