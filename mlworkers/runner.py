"""Running auto-annotation jobs: planning a job into chunks, running a chunk on a GPU worker,
and watching chunks whose worker died. Backends never touch the database; this module feeds
them and stores what they return (machine judgments in `annotation`, failures beside the job).

A job is claimed through `core.jobs` for its planning. Each chunk is claimed on its own (queued,
or running with a silent heartbeat), beats while it runs (which keeps its job alive too), counts
its items on the job as the judge answers (`mlworkers.counting`), and stores its answers in one
transaction with its final counts; the last chunk ends the job.
"""
import logging
import random
from collections import defaultdict

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from annotation.models import AspectScore, Comparison, Image, PreferenceJudgment, Source
from core.jobs import JobCancelled, JobLost, heartbeat, job_claim, stale_before, unexpected_error_text
from core.statistics import statistics_refresh
from mlworkers.backends.base import Aspect, BackendError, ImageRef, PairRequest, ScoreRequest
from mlworkers.counting import ChunkTally, attempt_row, chunk_count, chunk_uncount
from mlworkers.models import MAX_SAMPLES, AutoAnnotationChunk, AutoAnnotationFailure, AutoAnnotationJob
from mlworkers.services import auto_job_resolve_revisions, backend_for

log = logging.getLogger(__name__)
Job = AutoAnnotationJob
Chunk = AutoAnnotationChunk
CHUNK_TASK = "mlworkers.auto_job_chunk"


# --- planning ----------------------------------------------------------------------------------

def auto_job_start(*, job_id: int, send: bool = True) -> list[int]:
    """Plan a claimed job: first resolve the Hub references its annotator was saved without (the job
    fails saying why when the Hub cannot tell), then its items (skipping those this annotator
    version already stored, and those a live chunk is judging) in chunks of whole prompts, each
    queued as a task on the gpu queue. A chunk holds about AUTO_JOB_CHUNK_ITEMS images, or that
    many pairs divided by the samples asked of each. A resumed job counts only what is left: its
    total is the items planned now (and those of a chunk still running), its counters start from
    what its running chunks counted, and the failures of the items asked again are dropped (they
    get fresh ones if they fail again). Returns the new chunks' ids (queued unless `send` is false)."""
    lease = job_claim(Job, job_id)
    if lease is None:
        return []
    with lease.running():
        try:
            auto_job_resolve_revisions(job_id=job_id)  # Hub references saved while the Hub was unreachable
        except BackendError as exc:
            lease.fail(str(exc))
            return []
        try:
            return _plan(lease, job_id, send)
        except JobCancelled:  # cancelled while planning: its chunks, if sent, find it not running
            lease.cancelled("cancelled while it was being planned")
            return []
    return []  # taken over by another worker meanwhile


def _plan(lease, job_id: int, send: bool) -> list[int]:
    """Chunk the job's missing items in one transaction, then queue them; the job is planned once sent."""
    with transaction.atomic():
        job = Job.objects.select_for_update().select_related("project").get(pk=job_id)
        if job.attempts != lease.attempt or job.status != Job.Status.RUNNING:
            raise JobLost()
        now = timezone.now()
        live = list(Chunk.live(job=job, since=stale_before(now)))
        ran_before = Chunk.objects.filter(job=job).exclude(pk__in=[c.pk for c in live]).delete()[0] > 0 or bool(live)
        busy = {item for chunk in live for item in chunk.item_ids}
        per_chunk = max(1, settings.AUTO_JOB_CHUNK_ITEMS // job.samples)
        planned, current = [], []
        for prompt_items in _items_by_prompt(job).values():
            prompt_items = [i for i in prompt_items if i not in busy]
            if current and len(current) + len(prompt_items) > per_chunk:
                planned.append(current)
                current = []
            current.extend(prompt_items)
        if current:
            planned.append(current)
        asked_again = [item for items in planned for item in items]
        left = _left_per_item(job, asked_again)
        chunks = Chunk.objects.bulk_create([Chunk(job=job, item_ids=items, items_total=sum(left[i] for i in items))
                                            for items in planned])
        AutoAnnotationFailure.objects.filter(job=job, **{f"{_item_key(job)}__in": asked_again}).delete()
        total = sum(c.items_total for c in chunks) + sum(c.items_total for c in live)
        Job.objects.filter(pk=job.pk).update(
            items_total=total, items_done=sum(c.items_done for c in live),
            items_failed=sum(c.items_failed for c in live), chunks_total=len(chunks) + len(live), chunks_done=0,
            message=f"resumed: {total} items left to ask" if ran_before else "")
        if not chunks and not live:
            lease.succeed("nothing left to annotate", planned_at=now)
            return []
    ids = [c.pk for c in chunks]
    if send:
        for chunk_id in ids:
            current_app.send_task(CHUNK_TASK, args=[chunk_id])
    lease.beat(planned_at=timezone.now())  # from here on, the job's chunks are watched instead
    return ids


def _left_per_item(job, item_ids: list[int]) -> dict[int, int]:
    """How many items the judge will be asked per image (1) or per pair: its (order, sample) keys
    this version has not stored yet."""
    if job.kind == Job.Kind.SCORE:
        return dict.fromkeys(item_ids, 1)
    stored = _stored_keys(job).filter(comparison_id__in=item_ids)
    asked = F("left_image_id") * MAX_SAMPLES + F("sample")
    counts = dict(stored.values("comparison_id").annotate(keys=Count(asked, distinct=True))
                  .values_list("comparison_id", "keys"))
    return {item: _per_item(job) - counts.get(item, 0) for item in item_ids}


def _stored_keys(job):
    """This version's judgments of the (order, sample) keys the job asks."""
    mine = PreferenceJudgment.objects.filter(source=Source.MACHINE, machine_annotator_id=job.machine_annotator_id,
                                             machine_version=job.machine_version, sample__lt=job.samples)
    if job.orders == Job.Orders.ONE:
        mine = mine.filter(left_image_id=F("comparison__image_a_id"))
    return mine


def _items_by_prompt(job) -> dict[int, list[int]]:
    if job.kind == Job.Kind.SCORE:
        items = Image.objects.filter(project=job.project)
        stored = AspectScore.objects.filter(source=Source.MACHINE, machine_annotator_id=job.machine_annotator_id)
        labelled_by = "image_id"
    else:
        items = Comparison.objects.filter(project=job.project)
        stored = PreferenceJudgment.objects.filter(source=Source.MACHINE, machine_annotator_id=job.machine_annotator_id)
        labelled_by = "comparison_id"
    if job.scope == Job.Scope.UNLABELLED:
        items = items.exclude(id__in=stored.values(labelled_by))
    else:
        # This version's finished items are never asked again (resume); the rest are.
        items = items.exclude(id__in=_finished_by_version(job, stored, labelled_by))
    pairs = list(items.order_by("prompt_id", "id").values_list("prompt_id", "id"))
    if job.scope == Job.Scope.SAMPLE and job.sample_size and job.sample_size < len(pairs):
        pairs = sorted(random.Random(job.sample_seed).sample(pairs, job.sample_size))
    by_prompt: dict[int, list[int]] = defaultdict(list)
    for prompt_id, item_id in pairs:
        by_prompt[prompt_id].append(item_id)
    return by_prompt


def _finished_by_version(job, stored, labelled_by):
    mine = stored.filter(machine_version=job.machine_version)
    if job.kind == Job.Kind.SCORE:
        return mine.values(labelled_by)
    # A pair is finished once every asked (order, sample) is stored: count the distinct ones.
    mine = mine.filter(sample__lt=job.samples)
    if job.orders == Job.Orders.ONE:
        mine = mine.filter(left_image_id=F("comparison__image_a_id"))
    asked = F("left_image_id") * MAX_SAMPLES + F("sample")
    return (mine.values(labelled_by).annotate(keys=Count(asked, distinct=True))
            .filter(keys__gte=len(_orders(job)) * job.samples).values(labelled_by))


def _item_key(job) -> str:
    return "image_id" if job.kind == Job.Kind.SCORE else "comparison_id"


def _orders(job) -> list[bool]:
    """The presentation orders a pairs job asks: image a first, and unless one order, image b first."""
    return [True] if job.orders == Job.Orders.ONE else [True, False]


# --- running a chunk (on a GPU worker) -----------------------------------------------------------

def auto_job_run_chunk(*, chunk_id: int) -> None:
    """Ask the judge about one chunk and store its answers. Safe to deliver twice: only a queued
    chunk of a running job, or one whose worker died, is claimed. A job-wide failure (weights
    missing, endpoint down, a missing extra, an unexpected error) records the chunk's items as
    failures with the reason and fails the job; an item's bad answer is that item's failure."""
    claimed = _chunk_claim(chunk_id)
    if claimed is None:
        return
    chunk, job = claimed
    with heartbeat(lambda: _chunk_beat(chunk)):
        annotator = job.machine_annotator
        if annotator.version != job.machine_version:
            _chunk_failed(chunk, f"machine annotator {annotator.name} changed since launch; launch a new job",
                          fail_job=True)
            return
        try:
            backend = backend_for(annotator)
            if job.kind == Job.Kind.SCORE:
                judgments, failures, done, failed = _score_chunk(job, backend, chunk)
            else:
                judgments, failures, done, failed = _pairs_chunk(job, backend, chunk)
        except BackendError as exc:
            _chunk_failed(chunk, str(exc), fail_job=True)
            return
        except Exception as exc:
            _chunk_failed(chunk, unexpected_error_text(exc), fail_job=True)
            raise
    _chunk_store(chunk, judgments, failures, done, failed)


def _chunk_claim(chunk_id: int):
    """The chunk and its job, the chunk now running for this worker; None when there is nothing to
    do. The job's row is locked while the chunk is claimed: a cancel either comes first (the chunk
    does nothing) or sees the chunk running (the job stays `cancelling` until the chunk ends)."""
    now = timezone.now()
    with transaction.atomic():
        chunk = Chunk.objects.select_for_update().filter(pk=chunk_id).first()
        if chunk is None:
            return None
        job = Job.objects.select_for_update(of=("self",)).select_related("project", "machine_annotator").get(
            pk=chunk.job_id)
        taking_over = chunk.status == Chunk.Status.RUNNING and not _chunk_alive(chunk, now)
        if job.status != Job.Status.RUNNING or (chunk.status != Chunk.Status.QUEUED and not taking_over):
            return None
        chunk_uncount(chunk)  # what a lost attempt counted: this one asks its items again
        chunk.status, chunk.attempts, chunk.heartbeat_at = Chunk.Status.RUNNING, chunk.attempts + 1, now
        chunk.save(update_fields=["status", "attempts", "heartbeat_at"])
        Job.objects.filter(pk=job.pk).update(heartbeat_at=now)
    return chunk, job


def _chunk_alive(chunk, now=None) -> bool:
    return chunk.heartbeat_at is not None and chunk.heartbeat_at >= stale_before(now)


def _chunk_beat(chunk) -> None:
    now = timezone.now()
    if attempt_row(chunk).update(heartbeat_at=now):
        Job.objects.filter(pk=chunk.job_id, status__in=(Job.Status.RUNNING, Job.Status.CANCELLING)).update(
            heartbeat_at=now)


def _per_item(job) -> int:
    return len(_orders(job)) * job.samples if job.kind == Job.Kind.PAIRS else 1


def _chunk_store(chunk, judgments, failures, done, failed) -> None:
    """Store a chunk's answers and its final counts on its job, in one transaction; the last chunk
    ends the job. Answers of a chunk that another worker took over are dropped (that worker stores)."""
    with transaction.atomic():
        if not chunk_count(chunk, done=done, failed=failed, status=Chunk.Status.DONE):
            log.warning("auto job chunk %s was taken over; attempt %s stores nothing", chunk.pk, chunk.attempts)
            return
        for model in (AspectScore, PreferenceJudgment):
            rows = [j for j in judgments if isinstance(j, model)]
            if rows:
                model.objects.bulk_create(rows, ignore_conflicts=True)
        AutoAnnotationFailure.objects.bulk_create(failures)
        finished = _chunk_ended(chunk.job_id)
    if finished:
        statistics_refresh(AspectScore, PreferenceJudgment)


def _chunk_ended(job_id: int, *, fail_with: str = "") -> bool:
    """Count an ended chunk (its items are counted already) and end the job: failed with
    `fail_with` when given, else when nothing is left to wait for. Caller is inside a transaction.
    Returns whether the job ended."""
    job = Job.objects.select_for_update().get(pk=job_id)
    if job.status not in (Job.Status.RUNNING, Job.Status.CANCELLING):
        return False  # failed or cancelled meanwhile: the answers are kept, the counters are not the job's now
    job.chunks_done += 1
    now = timezone.now()
    fields = ["chunks_done"]
    if fail_with:
        log.warning("auto job %s failed: %s", job.pk, fail_with)
        job.status, job.finished_at, job.message = Job.Status.FAILED, now, fail_with[:2000]
        fields += ["status", "finished_at", "message"]
    elif job.status == Job.Status.RUNNING and job.chunks_done >= job.chunks_total:
        job.status, job.finished_at = Job.Status.SUCCEEDED, now
        job.message = f"{job.items_done} items annotated, {job.items_failed} failed"
        fields += ["status", "finished_at", "message"]
    elif job.status == Job.Status.CANCELLING and not Chunk.live(job=job, since=stale_before(now)).exists():
        job.status, job.finished_at = Job.Status.CANCELLED, now
        job.message = f"cancelled after {job.items_done} items annotated, {job.items_failed} failed"
        fields += ["status", "finished_at", "message"]
    job.save(update_fields=fields)
    return job.status in Job.FINISHED


def _chunk_failed(chunk, reason: str, *, fail_job: bool) -> None:
    """Record every item of the chunk as failed with `reason`; with `fail_job`, the job fails with it."""
    with transaction.atomic():
        job = Job.objects.get(pk=chunk.job_id)
        if not chunk_count(chunk, done=0, failed=chunk.items_total, status=Chunk.Status.FAILED):
            return
        AutoAnnotationFailure.objects.bulk_create(
            [AutoAnnotationFailure(job=job, aspects=list(job.aspects), error=reason[:1000], **{_item_key(job): i})
             for i in chunk.item_ids])
        _chunk_ended(job.pk, fail_with=reason if fail_job else "")


def auto_job_chunk_crashed(*, chunk_id: int, exc: BaseException) -> None:
    """Celery's failure path (the safety net): a chunk task raised outside the runner's own handling."""
    chunk = Chunk.objects.filter(pk=chunk_id).first()
    if chunk is not None and chunk.status == Chunk.Status.RUNNING:
        _chunk_failed(chunk, unexpected_error_text(exc), fail_job=True)


def auto_job_chunks_reap(*, now=None) -> int:
    """Chunks whose worker went silent: queued again, or after JOB_MAX_ATTEMPTS lost workers,
    their items recorded as failed ("worker lost"). A cancelling job's silent chunk is let go.
    Returns how many chunks were touched."""
    now = now or timezone.now()
    touched = 0
    silent = Chunk.objects.filter(
        Q(heartbeat_at__lt=stale_before(now)) | Q(heartbeat_at__isnull=True), status=Chunk.Status.RUNNING,
        job__status__in=(Job.Status.RUNNING, Job.Status.CANCELLING)).values_list("pk", flat=True)
    for chunk_id in list(silent):
        with transaction.atomic():
            chunk = Chunk.objects.select_for_update().get(pk=chunk_id)
            if chunk.status != Chunk.Status.RUNNING or _chunk_alive(chunk, now):
                continue
            job = Job.objects.get(pk=chunk.job_id)
            touched += 1
            if job.status == Job.Status.CANCELLING or chunk.attempts >= settings.JOB_MAX_ATTEMPTS:
                reason = ("cancelled while its worker was lost" if job.status == Job.Status.CANCELLING else
                          f"worker lost: {chunk.attempts} worker(s) stopped while judging this chunk")
                _chunk_failed(chunk, reason, fail_job=False)
                continue
            chunk_uncount(chunk)
            chunk.status = Chunk.Status.QUEUED
            chunk.save(update_fields=["status"])
            transaction.on_commit(lambda pk=chunk.pk: current_app.send_task(CHUNK_TASK, args=[pk]))
            log.warning("auto job %s: chunk %s lost its worker; queued again", job.pk, chunk.pk)
    return touched


def _aspects(job) -> list[Aspect]:
    """The job's aspects as the judge is asked them; "overall" in the project's pairwise question."""
    by_key = {a["key"]: a for a in [job.project.overall_aspect, *job.project.aspects]}
    return [Aspect(key=k, label=by_key.get(k, {}).get("label", k), question=by_key.get(k, {}).get("question", ""))
            for k in job.aspects]


def _ref(image) -> ImageRef:
    return ImageRef(image_id=image.id, preview_key=image.preview_key, storage_key=image.storage_key)


def _machine(job, **fields) -> dict:
    return dict(project_id=job.project_id, source=Source.MACHINE, machine_annotator_id=job.machine_annotator_id,
                machine_version=job.machine_version, **fields)


def _score_chunk(job, backend, chunk):
    """Ask the judge for every image of the chunk; an image is done when any aspect was scored."""
    images = list(Image.objects.filter(id__in=chunk.item_ids).select_related("prompt").order_by("prompt_id", "id"))
    by_prompt = defaultdict(list)
    for image in images:
        by_prompt[image.prompt_id].append(image)
    aspects = _aspects(job)
    requests = [ScoreRequest(prompt=group[0].prompt.text, images=[_ref(i) for i in group], aspects=aspects,
                             scale=job.project.score_scale) for group in by_prompt.values()]
    tally = ChunkTally(chunk, item_of=lambda result: result.image_id)
    results = backend.score(requests, progress=tally)
    judgments = [AspectScore(**_machine(job, image_id=r.image_id, aspect=r.aspect, value=r.value,
                                        rationale=r.rationale)) for r in results if not r.failed]
    failures = _failure_rows(job, results, item_of=lambda result: {"image_id": result.image_id})
    answered = {r.image_id for r in results if not r.failed}
    done = sum(1 for image in images if image.id in answered)
    return judgments, failures, done, len(images) - done


def _pairs_chunk(job, backend, chunk):
    """Ask the judge every (pair, order, sample) of the chunk this version has not stored; an
    item is one such key, done when any of its aspects was answered. Keys stored already were not
    planned as items (`_left_per_item`) and are not counted."""
    comparison_ids = chunk.item_ids
    comparisons = list(Comparison.objects.filter(id__in=comparison_ids)
                       .select_related("prompt", "image_a", "image_b").order_by("prompt_id", "id"))
    stored = set(PreferenceJudgment.objects.filter(
        source=Source.MACHINE, machine_annotator_id=job.machine_annotator_id, machine_version=job.machine_version,
        comparison_id__in=comparison_ids).values_list("comparison_id", "left_image_id", "sample"))
    aspects = _aspects(job)
    requests, comparison_of = [], {}
    for comparison in comparisons:
        for a_first in _orders(job):
            first, second = (comparison.image_a, comparison.image_b) if a_first else (comparison.image_b,
                                                                                      comparison.image_a)
            missing = tuple(s for s in range(job.samples) if (comparison.id, first.id, s) not in stored)
            if missing:
                requests.append(PairRequest(prompt=comparison.prompt.text, first=_ref(first), second=_ref(second),
                                            aspects=aspects, samples=missing))
                comparison_of[(first.id, second.id)] = comparison

    def item_of(result):
        return {"comparison_id": comparison_of[(result.first_id, result.second_id)].id,
                "first_image_id": result.first_id, "sample": result.sample}

    tally = ChunkTally(chunk, item_of=lambda r: (r.first_id, r.second_id, r.sample))
    results = backend.judge_pairs(requests, progress=tally) if requests else []
    judgments, outcome = [], defaultdict(list)
    for result in results:
        comparison = comparison_of[(result.first_id, result.second_id)]
        outcome[(comparison.id, result.first_id, result.sample)].append(not result.failed)
        if result.failed:
            continue
        first_is_a = result.first_id == comparison.image_a_id
        choice = {"first": "a" if first_is_a else "b", "second": "b" if first_is_a else "a", "tie": "tie"}[result.choice]
        judgments.append(PreferenceJudgment(**_machine(job, comparison=comparison, aspect=result.aspect, choice=choice,
                                                       left_image_id=result.first_id, sample=result.sample,
                                                       rationale=result.rationale)))
    answered = sum(1 for ok in outcome.values() if any(ok))
    return judgments, _failure_rows(job, results, item_of=item_of), answered, len(outcome) - answered


def _failure_rows(job, results, *, item_of) -> list[AutoAnnotationFailure]:
    """One failure per item (`item_of(result)`: the row's item fields) from its failed results:
    the aspects it failed on, in the job's order, and the reason, one per aspect where they differ."""
    failed: dict[tuple, list] = defaultdict(list)
    for result in results:
        if result.failed:
            failed[tuple(item_of(result).items())].append(result)
    order = {key: i for i, key in enumerate(job.aspects)}
    rows = []
    for item, group in failed.items():
        group.sort(key=lambda r: order.get(r.aspect, len(order)))
        reasons = list(dict.fromkeys(r.error for r in group))
        error = reasons[0] if len(reasons) == 1 else "; ".join(f"{r.aspect}: {r.error}" for r in group)
        rows.append(AutoAnnotationFailure(job=job, aspects=[r.aspect for r in group], error=error[:1000],
                                          raw=next((r.raw for r in group if r.raw), ""), **dict(item)))
    return rows
