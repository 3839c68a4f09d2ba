"""Machine annotators and auto-annotation jobs: every write, and the chunk runner the GPU
workers call. Backends never touch the database; this module feeds them and stores what
they return (machine judgments in `annotation`, failures beside the job)."""
import hashlib
import json
import logging
import random
from collections import defaultdict

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Count, F
from django.utils import timezone

from annotation.models import AspectScore, Comparison, Image, MachineAnnotator, PreferenceJudgment, Project, Source
from mlworkers.backends.base import Aspect, BackendError, ImageRef, PairRequest, ScoreRequest, backend_class
from mlworkers.models import MAX_SAMPLES, AutoAnnotationFailure, AutoAnnotationJob

log = logging.getLogger(__name__)
Job = AutoAnnotationJob


# --- machine annotators ------------------------------------------------------------------------

def machine_annotator_version(*, backend: str, model_ref: str, parameters: dict, prompt_template: str) -> str:
    """A hash of everything that changes a judge's answers."""
    blob = json.dumps([backend, model_ref, parameters, prompt_template], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _check_annotator_fields(backend, parameters):
    try:
        backend_class(backend)
    except BackendError as exc:
        raise ValidationError({"backend": str(exc)}) from None
    if not isinstance(parameters, dict):
        raise ValidationError({"parameters": "must be a JSON object"})


@transaction.atomic
def machine_annotator_create(*, name: str, backend: str, model_ref: str, parameters: dict | None = None,
                             prompt_template: str = "", created_by=None) -> MachineAnnotator:
    parameters = parameters or {}
    _check_annotator_fields(backend, parameters)
    if MachineAnnotator.objects.filter(name=name).exists():
        raise ValidationError({"name": f"a machine annotator named {name!r} exists"})
    annotator = MachineAnnotator(name=name, backend=backend, model_ref=model_ref, parameters=parameters,
                                 prompt_template=prompt_template, created_by=created_by)
    annotator.version = machine_annotator_version(backend=backend, model_ref=model_ref, parameters=parameters,
                                                  prompt_template=prompt_template)
    annotator.full_clean()
    annotator.save()
    return annotator


@transaction.atomic
def machine_annotator_update(*, annotator: MachineAnnotator, **fields) -> MachineAnnotator:
    """Change an annotator; its version changes with anything that changes its answers."""
    for key, value in fields.items():
        setattr(annotator, key, value)
    _check_annotator_fields(annotator.backend, annotator.parameters)
    annotator.version = machine_annotator_version(backend=annotator.backend, model_ref=annotator.model_ref,
                                                  parameters=annotator.parameters,
                                                  prompt_template=annotator.prompt_template)
    annotator.full_clean()
    annotator.save()
    return annotator


# --- launching, cancelling, resuming -------------------------------------------------------------

@transaction.atomic
def auto_job_launch(*, project: Project, annotator: MachineAnnotator, kind: str, scope: str = Job.Scope.ALL,
                    sample_size: int | None = None, aspects: list[str] | None = None,
                    orders: str = Job.Orders.BOTH, samples: int = 1, created_by=None) -> Job:
    """Check and record a job, then queue its planning after commit. `samples` > 1 asks every
    (pair, order, aspect) that many times; it is refused, naming `samples`, for score jobs and for
    judges that would give the same answer each time."""
    cls = backend_class(annotator.backend)
    _check_samples(cls, annotator, kind, samples)
    if kind == Job.Kind.SCORE and not cls.can_score:
        raise ValidationError({"kind": f"backend {annotator.backend} does not score images"})
    if kind == Job.Kind.PAIRS and not cls.can_judge_pairs:
        raise ValidationError({"kind": f"backend {annotator.backend} does not judge pairs"})
    aspects = list(aspects or project.aspect_keys)
    unknown = [a for a in aspects if a not in project.aspect_keys]
    if unknown:
        raise ValidationError({"aspects": f"not aspects of this project: {', '.join(unknown)}"})
    if scope == Job.Scope.SAMPLE and not sample_size:
        raise ValidationError({"sample_size": "a sample needs its size"})
    if not annotator.is_active:
        raise ValidationError({"machine_annotator": f"{annotator.name} is switched off"})
    if not Image.objects.filter(project=project).exists():
        raise ValidationError({"project": f"project {project.slug!r} has no images to annotate"})
    if kind == Job.Kind.PAIRS and not Comparison.objects.filter(project=project).exists():
        raise ValidationError({"project": f"project {project.slug!r} has no pairs to judge"})
    twin = Job.objects.select_for_update().filter(
        project=project, machine_annotator=annotator, machine_version=annotator.version, kind=kind,
        status__in=Job.ACTIVE).first()
    if twin is not None:
        raise ValidationError({"machine_annotator": f"job {twin.pk} with this annotator is already {twin.status} "
                                                    f"on this project; cancel it or wait for it"})
    job = Job.objects.create(project=project, machine_annotator=annotator, machine_version=annotator.version,
                             kind=kind, scope=scope, sample_size=sample_size, sample_seed=random.randrange(2**31),
                             aspects=aspects, orders=orders, samples=samples, created_by=created_by)
    _enqueue_start(job)
    return job


def _check_samples(cls, annotator, kind, samples) -> None:
    if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= MAX_SAMPLES:
        raise ValidationError({"samples": f"must be a whole number from 1 to {MAX_SAMPLES} (got {samples!r})"})
    if samples == 1:
        return
    refusal = cls.sampling_refusal(annotator.parameters)
    if refusal:
        raise ValidationError({"samples": f"{samples} samples would be {samples} copies of one answer: {refusal}"})
    if kind != Job.Kind.PAIRS:
        raise ValidationError({"samples": "several samples are for pairs jobs; a score job asks each image once"})


def _enqueue_start(job):
    from mlworkers.tasks import auto_job_start_task

    transaction.on_commit(lambda: auto_job_start_task.delay(job.pk))


@transaction.atomic
def auto_job_cancel(*, job: Job) -> Job:
    """Stop a job: chunks not yet started do nothing; a running chunk finishes its batch."""
    job = Job.objects.select_for_update().get(pk=job.pk)
    if job.status in Job.ACTIVE:
        job.status, job.finished_at = Job.Status.CANCELLED, timezone.now()
        job.message = "cancelled"
        job.save(update_fields=["status", "finished_at", "message"])
    return job


@transaction.atomic
def auto_job_resume(*, job: Job) -> Job:
    """Run a stopped job again: what it already stored is skipped, the rest is asked anew."""
    job = Job.objects.select_for_update().get(pk=job.pk)
    if job.status in Job.ACTIVE:
        raise ValidationError({"status": f"job {job.pk} is already {job.status}"})
    if job.machine_annotator.version != job.machine_version:
        raise ValidationError({"machine_annotator": "the annotator changed since this job ran; launch a new job"})
    job.status, job.message, job.finished_at = Job.Status.PENDING, "", None
    job.save(update_fields=["status", "message", "finished_at"])
    _enqueue_start(job)
    return job


# --- planning --------------------------------------------------------------------------------

def auto_job_start(*, job_id: int) -> list[list[int]]:
    """Work out the job's items (skipping those this annotator version already stored), split
    them into chunks of whole prompts, and mark the job running. Returns the chunks' item ids
    (image ids, or comparison ids for pairs) for the caller to queue. A chunk holds about
    AUTO_JOB_CHUNK_ITEMS images, or that many pairs divided by the samples asked of each."""
    with transaction.atomic():
        job = Job.objects.select_for_update().select_related("project").get(pk=job_id)
        if job.status != Job.Status.PENDING:
            return []
        by_prompt = _items_by_prompt(job)
        per_chunk = max(1, settings.AUTO_JOB_CHUNK_ITEMS // job.samples)
        chunks, current = [], []
        for prompt_items in by_prompt.values():
            if current and len(current) + len(prompt_items) > per_chunk:
                chunks.append(current)
                current = []
            current.extend(prompt_items)
        if current:
            chunks.append(current)
        per_item = len(_orders(job)) * job.samples if job.kind == Job.Kind.PAIRS else 1
        job.items_total = sum(len(c) for c in chunks) * per_item
        job.items_done = job.items_failed = job.chunks_done = 0
        job.chunks_total = len(chunks)
        job.status, job.started_at = Job.Status.RUNNING, timezone.now()
        if not chunks:
            job.status, job.finished_at = Job.Status.SUCCEEDED, timezone.now()
            job.message = "nothing left to annotate"
        job.save()
    return chunks


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


def _orders(job) -> list[bool]:
    """The presentation orders a pairs job asks: image a first, and unless one order, image b first."""
    return [True] if job.orders == Job.Orders.ONE else [True, False]


# --- running a chunk (on a GPU worker) -----------------------------------------------------------

_BACKENDS: dict[tuple[str, str], object] = {}


def backend_for(annotator: MachineAnnotator):
    """The annotator's backend, built once per worker process and kept for later chunks."""
    key = (annotator.backend, annotator.version)
    if key not in _BACKENDS:
        from mlworkers.weights import pick_device

        cls = backend_class(annotator.backend)
        _BACKENDS[key] = cls(model_ref=annotator.model_ref, parameters=dict(annotator.parameters),
                             prompt_template=annotator.prompt_template, read_bytes=read_storage_bytes,
                             device=pick_device())
    return _BACKENDS[key]


def read_storage_bytes(key: str) -> bytes:
    with default_storage.open(key, "rb") as handle:
        return handle.read()


def auto_job_run_chunk(*, job_id: int, item_ids: list[int]) -> None:
    """Ask the judge about one chunk and store its answers; a job-wide failure (weights missing,
    endpoint down) fails the job, an item's bad answer is recorded as that item's failure."""
    job = Job.objects.select_related("project", "machine_annotator").get(pk=job_id)
    if job.status != Job.Status.RUNNING:
        return  # cancelled or failed meanwhile: do nothing
    annotator = job.machine_annotator
    if annotator.version != job.machine_version:
        _fail(job, f"machine annotator {annotator.name} changed since launch; launch a new job")
        return
    try:
        backend = backend_for(annotator)
        if job.kind == Job.Kind.SCORE:
            judgments, failures, done, failed = _score_chunk(job, backend, item_ids)
        else:
            judgments, failures, done, failed = _pairs_chunk(job, backend, item_ids)
    except BackendError as exc:
        _fail(job, str(exc))
        return
    with transaction.atomic():
        for model in (AspectScore, PreferenceJudgment):
            rows = [j for j in judgments if isinstance(j, model)]
            if rows:
                model.objects.bulk_create(rows, ignore_conflicts=True)
        AutoAnnotationFailure.objects.bulk_create(failures)
        Job.objects.filter(pk=job.pk).update(items_done=F("items_done") + done, items_failed=F("items_failed") + failed,
                                             chunks_done=F("chunks_done") + 1)
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.status == Job.Status.RUNNING and job.chunks_done >= job.chunks_total:
            job.status, job.finished_at = Job.Status.SUCCEEDED, timezone.now()
            job.message = f"{job.items_done} items annotated, {job.items_failed} failed"
            job.save(update_fields=["status", "finished_at", "message"])


def _fail(job, message):
    log.warning("auto job %s failed: %s", job.pk, message)
    Job.objects.filter(pk=job.pk, status__in=Job.ACTIVE).update(
        status=Job.Status.FAILED, message=message[:2000], finished_at=timezone.now())


def _aspects(job) -> list[Aspect]:
    by_key = {a["key"]: a for a in job.project.aspects}
    return [Aspect(key=k, label=by_key.get(k, {}).get("label", k), question=by_key.get(k, {}).get("question", ""))
            for k in job.aspects]


def _ref(image) -> ImageRef:
    return ImageRef(image_id=image.id, preview_key=image.preview_key, storage_key=image.storage_key)


def _machine(job, **fields) -> dict:
    return dict(project_id=job.project_id, source=Source.MACHINE, machine_annotator_id=job.machine_annotator_id,
                machine_version=job.machine_version, **fields)


def _score_chunk(job, backend, image_ids):
    images = list(Image.objects.filter(id__in=image_ids).select_related("prompt").order_by("prompt_id", "id"))
    by_prompt = defaultdict(list)
    for image in images:
        by_prompt[image.prompt_id].append(image)
    aspects = _aspects(job)
    requests = [ScoreRequest(prompt=group[0].prompt.text, images=[_ref(i) for i in group], aspects=aspects,
                             scale=job.project.score_scale) for group in by_prompt.values()]
    results = backend.score(requests)
    judgments, failures, outcome = [], [], defaultdict(list)
    for result in results:
        outcome[result.image_id].append(not result.failed)
        if result.failed:
            failures.append(AutoAnnotationFailure(job=job, image_id=result.image_id, aspect=result.aspect,
                                                  error=result.error[:1000], raw=result.raw))
        else:
            judgments.append(AspectScore(**_machine(job, image_id=result.image_id, aspect=result.aspect,
                                                    value=result.value, rationale=result.rationale)))
    done = sum(1 for image in images if any(outcome[image.id]))
    return judgments, failures, done, len(images) - done


def _pairs_chunk(job, backend, comparison_ids):
    """Ask the judge every (pair, order, sample) of the chunk this version has not stored; an
    item is one such key, done when any of its aspects was answered."""
    comparisons = list(Comparison.objects.filter(id__in=comparison_ids)
                       .select_related("prompt", "image_a", "image_b").order_by("prompt_id", "id"))
    stored = set(PreferenceJudgment.objects.filter(
        source=Source.MACHINE, machine_annotator_id=job.machine_annotator_id, machine_version=job.machine_version,
        comparison_id__in=comparison_ids).values_list("comparison_id", "left_image_id", "sample"))
    aspects = _aspects(job)
    requests, comparison_of = [], {}
    skipped = 0
    for comparison in comparisons:
        for a_first in _orders(job):
            first, second = (comparison.image_a, comparison.image_b) if a_first else (comparison.image_b,
                                                                                      comparison.image_a)
            missing = tuple(s for s in range(job.samples) if (comparison.id, first.id, s) not in stored)
            skipped += job.samples - len(missing)
            if missing:
                requests.append(PairRequest(prompt=comparison.prompt.text, first=_ref(first), second=_ref(second),
                                            aspects=aspects, samples=missing))
                comparison_of[(first.id, second.id)] = comparison
    results = backend.judge_pairs(requests) if requests else []
    judgments, failures, outcome = [], [], defaultdict(list)
    for result in results:
        comparison = comparison_of[(result.first_id, result.second_id)]
        outcome[(comparison.id, result.first_id, result.sample)].append(not result.failed)
        if result.failed:
            failures.append(AutoAnnotationFailure(job=job, comparison=comparison, first_image_id=result.first_id,
                                                  sample=result.sample, aspect=result.aspect,
                                                  error=result.error[:1000], raw=result.raw))
            continue
        first_is_a = result.first_id == comparison.image_a_id
        choice = {"first": "a" if first_is_a else "b", "second": "b" if first_is_a else "a", "tie": "tie"}[result.choice]
        judgments.append(PreferenceJudgment(**_machine(job, comparison=comparison, aspect=result.aspect, choice=choice,
                                                       left_image_id=result.first_id, sample=result.sample,
                                                       rationale=result.rationale)))
    answered = sum(1 for ok in outcome.values() if any(ok))
    return judgments, failures, answered + skipped, len(outcome) - answered
