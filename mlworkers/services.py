"""Machine annotators and auto-annotation jobs: creating and changing annotators; launching,
cancelling and resuming jobs; the backend a worker builds for an annotator. Planning and
running jobs is `mlworkers.runner`'s."""
import hashlib
import json
import logging
import random
from dataclasses import dataclass

from celery import current_app
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import transaction

from annotation.models import Comparison, Image, MachineAnnotator, Project
from annotation.selectors import project_require_writable
from core.audit import audit_record
from core.jobs import job_cancel, job_requeue
from core.models import AuditAction
from core.text import holds_unstorable_text
from mlworkers import hub
from mlworkers.backends.base import BackendError, backend_class, backend_names
from mlworkers.models import MAX_SAMPLES, AutoAnnotationJob

log = logging.getLogger(__name__)
Job = AutoAnnotationJob


# --- machine annotators ------------------------------------------------------------------------

def machine_annotator_version(*, backend: str, model_ref: str, parameters: dict, prompt_template: str,
                              model_commits: dict | None = None) -> str:
    """A hash of everything that changes a judge's answers: its Hub references' commits too (an
    annotator without Hub references hashes as it always did)."""
    parts = [backend, model_ref, parameters, prompt_template] + ([model_commits] if model_commits else [])
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _version_of(annotator: MachineAnnotator, model_commits: dict | None = None) -> str:
    return machine_annotator_version(
        backend=annotator.backend, model_ref=annotator.model_ref, parameters=annotator.parameters,
        prompt_template=annotator.prompt_template,
        model_commits=annotator.model_commits if model_commits is None else model_commits)


@dataclass(frozen=True)
class AnnotatorCheck:
    """What `machine_annotator_check` found for exactly these fields: the commit of each Hub
    reference it could resolve, and the references it could not (the Hub was unreachable)."""

    backend: str
    model_ref: str
    parameters: dict
    model_commits: dict
    unresolved: tuple[str, ...] = ()

    def fits(self, *, backend: str, model_ref: str, parameters: dict) -> bool:
        return (self.backend, self.model_ref, self.parameters) == (backend, model_ref, parameters)


def _references(cls, model_ref: str, parameters: dict) -> list[tuple[str, str, str]]:
    """(field, reference, Hub files it loads) for each weights reference of an annotator: its
    model_ref when the backend loads weights, and the parameters naming weights files."""
    found = [("model_ref", model_ref, cls.weights)] if cls.weights else []
    return found + [(name, str(parameters[name]), files) for name, files in cls.reference_parameters
                    if parameters.get(name)]


def _check_reference(cls, name: str, text: str, files: str) -> hub.HubRef | None:
    """The Hub reference `text` is (None for a local path or an S3 key); ValidationError, by
    field, for one that cannot name weights: a local path that does not exist here, an ill-formed
    S3 key or Hub reference."""
    field = "model_ref" if name == "model_ref" else "parameters"
    what = "" if name == "model_ref" else f"{name}: "
    if text.startswith("s3://"):
        bucket, _, key = text[len("s3://"):].partition("/")
        if not bucket or not key:
            raise ValidationError({field: f"{what}malformed S3 reference {text!r}: expected s3://bucket/key "
                                          f"or s3://bucket/prefix/"})
        return None
    try:
        ref = hub.parse(text, files=files)
    except BackendError as exc:
        raise ValidationError({field: f"{what}{exc}"}) from None
    if ref is None and not hub.path_exists(text):
        forms = "hf://org/repo[@revision]" + (" or hf-hub:org/repo" if files == hub.FILES_OPEN_CLIP else "") + \
            (" or org/repo" if files in hub.PLAIN_ID_FILES else "")
        raise ValidationError({field: f"{what}no such local path: {text} (a model on the Hub is named {forms}; "
                                      f"one on S3 s3://bucket/key)"})
    return ref


def machine_annotator_check(*, backend: str, model_ref: str, parameters: dict,
                            known_commits: dict | None = None) -> AnnotatorCheck:
    """Refuse (ValidationError, by field) what no job could run: an unknown backend, parameters it
    does not take or values it refuses, a weights reference that is a local path not found here,
    an ill-formed S3 key or Hub reference. Then resolve each Hub reference not in `known_commits`
    to a commit: one the Hub lacks or refuses is refused; where the Hub cannot be asked
    (unreachable, HF_HUB_OFFLINE) a pinned sha is its own commit and anything else is left for
    the job to resolve when it starts. Asks the Hub (a few seconds at most): not inside a transaction."""
    try:
        cls = backend_class(backend)
    except BackendError as exc:
        raise ValidationError({"backend": str(exc)}) from None
    if not isinstance(parameters, dict):
        raise ValidationError({"parameters": "must be a JSON object"})
    if holds_unstorable_text(parameters):
        raise ValidationError({"parameters": "must not contain NUL characters or unpaired surrogates"})
    try:
        cls.check_parameters(parameters)
    except BackendError as exc:
        raise ValidationError({"parameters": str(exc)}) from None
    if not model_ref or not model_ref.strip():
        raise ValidationError({"model_ref": "give the model: a local path, s3:// key or Hub reference"
                                            if cls.weights else "give the model's name on the server"})
    refs = {text: (name, _check_reference(cls, name, text, files)) for name, text, files
            in _references(cls, model_ref, parameters)}
    known = known_commits or {}
    commits, unresolved = {}, []
    for text, (name, ref) in refs.items():
        if ref is None:
            continue
        if text in known:
            commits[text] = known[text]
            continue
        try:
            commits[text] = hub.resolve_commit(ref)
        except hub.HubUnreachable:
            if ref.commit:
                commits[text] = ref.commit
            else:
                unresolved.append(text)
        except BackendError as exc:
            what = "" if name == "model_ref" else f"{name}: "
            raise ValidationError({"model_ref" if name == "model_ref" else "parameters": f"{what}{exc}"}) from None
    return AnnotatorCheck(backend=backend, model_ref=model_ref, parameters=parameters, model_commits=commits,
                          unresolved=tuple(unresolved))


def machine_annotator_create(*, name: str, backend: str, model_ref: str, parameters: dict | None = None,
                             prompt_template: str = "", is_active: bool = True, created_by=None,
                             checked: AnnotatorCheck | None = None) -> MachineAnnotator:
    """Check (`machine_annotator_check`, or `checked` when made for these fields) and store an
    annotator, the commits of its Hub references in its version. Asks the Hub: not inside a transaction."""
    parameters = parameters or {}
    if MachineAnnotator.objects.filter(name=name).exists():
        raise ValidationError({"name": f"a machine annotator named {name!r} exists"})
    if checked is None or not checked.fits(backend=backend, model_ref=model_ref, parameters=parameters):
        checked = machine_annotator_check(backend=backend, model_ref=model_ref, parameters=parameters)
    annotator = MachineAnnotator(name=name, backend=backend, model_ref=model_ref, parameters=parameters,
                                 prompt_template=prompt_template, is_active=is_active, created_by=created_by,
                                 model_commits=checked.model_commits)
    annotator.version = _version_of(annotator)
    with transaction.atomic():
        if MachineAnnotator.objects.filter(name=name).exists():
            raise ValidationError({"name": f"a machine annotator named {name!r} exists"})
        annotator.full_clean()
        annotator.save()
    return annotator


def machine_annotator_update(*, annotator: MachineAnnotator, refresh_revisions: bool = False,
                             checked: AnnotatorCheck | None = None, **fields) -> MachineAnnotator:
    """Change an annotator; its version changes with anything that changes its answers. Its Hub
    references keep the commits they resolved to (a branch that moved is not followed) unless
    `refresh_revisions`, or the reference itself changed. Asks the Hub: not inside a transaction."""
    known = {} if refresh_revisions else dict(annotator.model_commits or {})
    for key, value in fields.items():
        setattr(annotator, key, value)
    if checked is None or refresh_revisions or not checked.fits(
            backend=annotator.backend, model_ref=annotator.model_ref, parameters=annotator.parameters):
        checked = machine_annotator_check(backend=annotator.backend, model_ref=annotator.model_ref,
                                          parameters=annotator.parameters, known_commits=known)
    annotator.model_commits = checked.model_commits
    annotator.version = _version_of(annotator)
    with transaction.atomic():
        annotator.full_clean()
        annotator.save()
    return annotator


def machine_annotator_unresolved(annotator: MachineAnnotator) -> list[str]:
    """Its Hub references not yet resolved to a commit (the Hub was unreachable when it was saved)."""
    try:
        cls = backend_class(annotator.backend)
    except BackendError:
        return []
    return [text for name, text, files in _references(cls, annotator.model_ref, annotator.parameters or {})
            if text not in (annotator.model_commits or {}) and _hub_ref(text, files, annotator) is not None]


def _hub_ref(text: str, files: str, annotator: MachineAnnotator) -> hub.HubRef | None:
    # A plain `org/repo` recorded with a commit was a Hub id where it was saved, whatever this machine holds.
    return hub.parse(text, files=files, local_first=text not in (annotator.model_commits or {}))


def auto_job_resolve_revisions(*, job_id: int) -> None:
    """Before a job is planned: resolve the Hub references its annotator could not resolve when it
    was saved, record their commits on the annotator (its version then includes them) and let the
    job, launched before, take that version, so that none of its judgments carries a version
    without the commit. The first commit recorded stays: jobs starting together share it.
    BackendError saying why when the Hub cannot tell (unreachable, HF_HUB_OFFLINE with a cold
    cache, a missing repo or revision, a refused token). Asks the Hub first, then writes in one
    short transaction."""
    job = Job.objects.select_related("machine_annotator").get(pk=job_id)
    annotator = job.machine_annotator
    cls = backend_class(annotator.backend)
    resolved = {}
    for name, text, files in _references(cls, annotator.model_ref, annotator.parameters or {}):
        ref = _hub_ref(text, files, annotator)
        if ref is not None and text not in (annotator.model_commits or {}):
            resolved[text] = hub.resolve_commit(ref)
    with transaction.atomic():
        annotator = MachineAnnotator.objects.select_for_update().get(pk=annotator.pk)
        job = Job.objects.select_for_update().get(pk=job_id)
        recorded = annotator.model_commits or {}
        commits = {text: recorded.get(text) or resolved.get(text)
                   for name, text, files in _references(cls, annotator.model_ref, annotator.parameters or {})
                   if text in recorded or text in resolved}
        if commits != recorded:
            annotator.model_commits = commits
            annotator.version = _version_of(annotator)
            annotator.save(update_fields=["model_commits", "version"])
        launched_as = _version_of(annotator, model_commits=job.model_commits)
        kept = all(commits.get(text) == commit for text, commit in job.model_commits.items())
        if job.machine_version != annotator.version and job.machine_version == launched_as and kept:
            Job.objects.filter(pk=job.pk).update(machine_version=annotator.version, model_commits=commits)


# --- launching, cancelling, resuming -------------------------------------------------------------

@transaction.atomic
def auto_job_launch(*, project: Project, annotator: MachineAnnotator, kind: str, scope: str = Job.Scope.ALL,
                    sample_size: int | None = None, aspects: list[str] | None = None,
                    orders: str = Job.Orders.BOTH, samples: int = 1, created_by=None) -> Job:
    """Check and record a job, then queue its planning after commit. `samples` > 1 asks every
    (pair, order, aspect) that many times; it is refused, naming `samples`, for score jobs and for
    judges that would give the same answer each time. An archived project is not annotated."""
    project_require_writable(project=project)
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
                             model_commits=annotator.model_commits, kind=kind, scope=scope, sample_size=sample_size,
                             sample_seed=random.randrange(2**31), aspects=aspects, orders=orders, samples=samples,
                             created_by=created_by)
    audit_record(actor=created_by, action=AuditAction.JOB_STARTED, project=project,
                 target=f"auto-annotation job {job.pk}", details={"machine_annotator": annotator.name, "kind": kind})
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


def auto_job_cancel(*, job: Job, actor=None) -> Job:
    """Stop a job: a queued one, or one with no chunk running, ends at once; otherwise it is
    `cancelling` until its running chunks finish their batch. Chunks not started do nothing."""
    return job_cancel(job=job, actor=actor)


@transaction.atomic
def auto_job_resume(*, job: Job, actor=None) -> Job:
    """Run a stopped job again: what it already stored is skipped, the rest is asked anew. Its
    counters start again from what is left (what was not done; planning makes that exact), and
    its rate from when it starts again."""
    job = Job.objects.select_for_update().get(pk=job.pk)
    project_require_writable(project=job.project)
    if not job.is_finished:
        raise ValidationError({"status": f"job {job.pk} is already {job.status}"})
    if job.machine_annotator.version != job.machine_version:
        raise ValidationError({"machine_annotator": "the annotator changed since this job ran; launch a new job"})
    Job.objects.filter(pk=job.pk).update(planned_at=None, started_at=None, items_total=job.items_total - job.items_done,
                                         items_done=0, items_failed=0)
    audit_record(actor=actor, action=AuditAction.JOB_STARTED, project=job.project,
                 target=f"auto-annotation job {job.pk}", details={"resumed": True})
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
        model_ref, parameters = _pinned(cls, annotator)
        # Backends running a local model pick their device; HTTP judges never import torch.
        _BACKENDS[key] = cls(model_ref=model_ref, parameters=parameters, prompt_template=annotator.prompt_template,
                             read_bytes=read_storage_bytes, device="auto")
    return _BACKENDS[key]


def _pinned(cls, annotator: MachineAnnotator) -> tuple[str, dict]:
    """The annotator's model_ref and parameters with each Hub reference pinned to the commit its
    version holds (`hf://org/repo@<sha>[/path]`): what a worker downloads is what the version says."""
    model_ref, parameters = annotator.model_ref, dict(annotator.parameters)
    for name, text, files in _references(cls, model_ref, parameters):
        ref = _hub_ref(text, files, annotator)
        if ref is None:
            continue
        commit = (annotator.model_commits or {}).get(text) or ref.commit
        if not commit:
            raise BackendError(f"{text} is not resolved to a commit yet: start the job again")
        if name == "model_ref":
            model_ref = ref.pinned(commit)
        else:
            parameters[name] = ref.pinned(commit)
    return model_ref, parameters


def read_storage_bytes(key: str) -> bytes:
    with default_storage.open(key, "rb") as handle:
        return handle.read()
