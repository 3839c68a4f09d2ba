"""Machine annotators and auto-annotation jobs: creating and changing annotators; launching,
cancelling and resuming jobs; the backend a worker builds for an annotator. Planning and
running jobs is `mlworkers.runner`'s."""
import hashlib
import json
import logging
import random

from celery import current_app
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import transaction

from annotation.models import Comparison, Image, MachineAnnotator, Project
from core.jobs import job_cancel, job_requeue
from mlworkers.backends.base import BackendError, backend_class, backend_names
from mlworkers.models import MAX_SAMPLES, AutoAnnotationJob

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
    _check_aspects(cls, annotator, project, kind, aspects)
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


def _check_aspects(cls, annotator, project, kind, aspects) -> None:
    """The project's aspects, or "overall" (its pairwise question): asked of any pair judge, but
    of a score job only where the backend scores one overall value per image (as PickScore or
    HPS v2 do); an MLLM asked to score one image on "which image is better" would be guessing."""
    overall = project.overall_aspect
    unknown = [a for a in aspects if a != overall["key"] and a not in project.aspect_keys]
    if unknown:
        raise ValidationError({"aspects": f"not aspects of this project: {', '.join(unknown)}"})
    scored = cls.scored_aspect(annotator.parameters)
    if kind == Job.Kind.SCORE and overall["key"] in aspects and scored != overall["key"]:
        scorers = [name for name in backend_names() if backend_class(name).scored_aspect({}) == overall["key"]]
        this = f"{annotator.name} ({annotator.backend}, which scores {scored!r})" if scored else \
            f"{annotator.name} ({annotator.backend})"
        raise ValidationError({"aspects": (
            f"'overall' is the pairwise question ({overall['question']!r}): a score job asks it only of a "
            f"backend that scores one overall value per image ({', '.join(scorers)}, or a CLIP-family scorer "
            f"with parameters.aspect \"overall\"), not of {this}; launch a pairs job for it")})


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
    transaction.on_commit(lambda: current_app.send_task(job.run_task, args=[job.pk]))


def auto_job_cancel(*, job: Job) -> Job:
    """Stop a job: a queued one, or one with no chunk running, ends at once; otherwise it is
    `cancelling` until its running chunks finish their batch. Chunks not started do nothing."""
    return job_cancel(job=job)


@transaction.atomic
def auto_job_resume(*, job: Job) -> Job:
    """Run a stopped job again: what it already stored is skipped, the rest is asked anew."""
    job = Job.objects.select_for_update().get(pk=job.pk)
    if not job.is_finished:
        raise ValidationError({"status": f"job {job.pk} is already {job.status}"})
    if job.machine_annotator.version != job.machine_version:
        raise ValidationError({"machine_annotator": "the annotator changed since this job ran; launch a new job"})
    Job.objects.filter(pk=job.pk).update(planned_at=None)
    return job_requeue(job=job)


# --- the backend a GPU worker runs --------------------------------------------------------------

_BACKENDS: dict[tuple[str, str], object] = {}


def backend_for(annotator: MachineAnnotator):
    """The annotator's backend, built once per worker process and kept for later chunks.
    BackendUnavailable when this worker lacks the extra the backend needs."""
    key = (annotator.backend, annotator.version)
    if key not in _BACKENDS:
        cls = backend_class(annotator.backend)
        cls.ensure_available()
        # Backends running a local model pick their device; HTTP judges never import torch.
        _BACKENDS[key] = cls(model_ref=annotator.model_ref, parameters=dict(annotator.parameters),
                             prompt_template=annotator.prompt_template, read_bytes=read_storage_bytes,
                             device="auto")
    return _BACKENDS[key]


def read_storage_bytes(key: str) -> bytes:
    with default_storage.open(key, "rb") as handle:
        return handle.read()
