"""Every write to projects, memberships and import jobs goes through these functions."""
import uuid
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from annotation.assignment import work_units_open
from annotation.importing import ImportSummary, LineError, manifest_import
from annotation.image_sources import SourcePolicy
from annotation.models import AnnotatorProfile, ImportJob, ImportLineError, Membership, Project, TaskType

RESEARCHERS_GROUP = "Researchers"


def _validate_project_fields(*, task_types=None, aspects=None) -> None:
    if task_types is not None:
        if not isinstance(task_types, list) or not task_types:
            raise ValidationError({"task_types": "at least one task type is required"})
        unknown = [t for t in task_types if t not in TaskType.values]
        if unknown:
            raise ValidationError({"task_types": f"unknown task type(s) {unknown}; choose from {TaskType.values}"})
        if len(set(task_types)) != len(task_types):
            raise ValidationError({"task_types": "each task type may appear once"})
    if aspects is not None:
        if not isinstance(aspects, list) or not aspects:
            raise ValidationError({"aspects": "at least one aspect is required"})
        keys = []
        for i, aspect in enumerate(aspects):
            if not isinstance(aspect, dict) or not isinstance(aspect.get("key"), str) or not aspect["key"]:
                raise ValidationError({"aspects": f"aspect {i} needs a non-empty string 'key'"})
            if not aspect["key"].replace("_", "").isalnum() or len(aspect["key"]) > 64:
                raise ValidationError({"aspects": f"aspect key {aspect['key']!r} must be letters, digits and _ (at most 64)"})
            if aspect["key"] == "overall":
                raise ValidationError({"aspects": "'overall' is reserved for the plain pairwise question"})
            keys.append(aspect["key"])
        if len(set(keys)) != len(keys):
            raise ValidationError({"aspects": "aspect keys must be unique"})


def _normalise_aspects(aspects):
    return [{"key": a["key"], "label": a.get("label") or a["key"].replace("_", " ").capitalize(),
             "question": a.get("question", "")} for a in aspects]


@transaction.atomic
def project_create(*, creator, slug: str, name: str, **fields) -> Project:
    """Create a project; its creator becomes a researcher member of it."""
    _validate_project_fields(task_types=fields.get("task_types"), aspects=fields.get("aspects"))
    if "aspects" in fields:
        fields["aspects"] = _normalise_aspects(fields["aspects"])
    if Project.objects.filter(slug=slug).exists():
        raise ValidationError({"slug": f"a project with slug {slug!r} already exists"})
    project = Project(slug=slug, name=name, created_by=creator, **fields)
    project.full_clean()
    project.save()
    Membership.objects.create(project=project, user=creator, role=Membership.Role.RESEARCHER)
    return project


@transaction.atomic
def project_update(*, project: Project, **fields) -> Project:
    _validate_project_fields(task_types=fields.get("task_types"), aspects=fields.get("aspects"))
    if "aspects" in fields:
        fields["aspects"] = _normalise_aspects(fields["aspects"])
    for name, value in fields.items():
        setattr(project, name, value)
    project.full_clean()
    project.save()
    if "task_types" in fields:
        work_units_open(project=project)
    return project


@transaction.atomic
def membership_set(*, project: Project, user, role: str) -> Membership:
    """Add `user` to `project` with `role`, or change the role of an existing member."""
    if role not in Membership.Role.values:
        raise ValidationError({"role": f"unknown role {role!r}; choose from {Membership.Role.values}"})
    membership, created = Membership.objects.get_or_create(project=project, user=user, defaults={"role": role})
    if not created and membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, project: Project, user) -> None:
    Membership.objects.filter(project=project, user=user).delete()


def researcher_grant(*, user) -> None:
    """Let `user` create projects (membership in the Researchers group)."""
    group, _ = Group.objects.get_or_create(name=RESEARCHERS_GROUP)
    group.permissions.add(Permission.objects.get(codename="add_project", content_type__app_label="annotation"))
    user.groups.add(group)


def import_policy_for_api(images_root: str) -> SourcePolicy:
    """A server-side import may read local files only under IMPORT_LOCAL_ROOTS."""
    if not images_root:
        return SourcePolicy.from_settings(images_root=None)
    root = Path(images_root).resolve()
    allowed = [Path(r).resolve() for r in settings.IMPORT_LOCAL_ROOTS]
    if not any(root.is_relative_to(a) for a in allowed):
        raise ValidationError({"images_root": f"{images_root!r} is not under a folder listed in IMPORT_LOCAL_ROOTS"})
    return SourcePolicy.from_settings(images_root=root)


def import_job_create(*, project: Project, creator, manifest: bytes, images_root: str = "",
                      max_pairs_per_prompt: int | None = None) -> ImportJob:
    """Store the manifest and queue an import job for it; the job starts after commit."""
    import_policy_for_api(images_root)  # refuse a forbidden root now, not in the worker
    if not manifest.strip():
        raise ValidationError({"manifest": "the manifest is empty"})
    key = default_storage.save(f"imports/{uuid.uuid4().hex}.jsonl", ContentFile(manifest))
    with transaction.atomic():
        job = ImportJob.objects.create(
            project=project, created_by=creator, manifest_key=key, images_root=images_root,
            max_pairs_per_prompt=max_pairs_per_prompt, lines_total=sum(1 for line in manifest.splitlines() if line.strip()),
        )
        from annotation.tasks import import_job_run_task

        transaction.on_commit(lambda: import_job_run_task.delay(job.pk))
    return job


def import_job_run(*, job: ImportJob) -> ImportJob:
    """Run a queued import job to its end, recording progress and per-line errors as it goes.

    Safe to run twice: a finished job is left alone, and a rerun of a crashed one creates only
    what the first run did not.
    """
    if job.status in (ImportJob.Status.SUCCEEDED, ImportJob.Status.FAILED):
        return job
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.RUNNING, started_at=timezone.now())
    ImportLineError.objects.filter(job=job).delete()

    def on_chunk(summary: ImportSummary, errors: list[LineError]) -> None:
        ImportLineError.objects.bulk_create(
            [ImportLineError(job=job, line=e.line, field=e.field, message=e.message[:1000]) for e in errors])
        ImportJob.objects.filter(pk=job.pk).update(**_summary_fields(summary))

    try:
        policy = import_policy_for_api(job.images_root)
        with default_storage.open(job.manifest_key, "rb") as manifest:
            summary = manifest_import(project=job.project, lines=manifest, policy=policy,
                                      max_pairs_per_prompt=job.max_pairs_per_prompt, on_chunk=on_chunk)
        work_units_open(project=job.project)
    except Exception as exc:
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportJob.Status.FAILED, finished_at=timezone.now(), message=f"{exc.__class__.__name__}: {exc}"[:2000])
        raise
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.Status.SUCCEEDED, finished_at=timezone.now(), **_summary_fields(summary),
        message=f"{summary.images_created} images imported, {summary.duplicates} duplicates, {summary.rejected} lines rejected",
    )
    job.refresh_from_db()
    return job


def _summary_fields(summary: ImportSummary) -> dict:
    return {"lines_done": summary.lines, "images_created": summary.images_created, "duplicates": summary.duplicates,
            "rejected": summary.rejected, "prompts_created": summary.prompts_created,
            "comparisons_created": summary.comparisons_created}


@transaction.atomic
def profile_update(*, user, consent: bool | None = None, **fields) -> AnnotatorProfile:
    """Save the person's optional demographics; consent is stamped the first time it is given
    and cleared when withdrawn."""
    profile, _ = AnnotatorProfile.objects.select_for_update().get_or_create(user=user)
    for name, value in fields.items():
        setattr(profile, name, value)
    if consent is True and profile.consent_at is None:
        profile.consent_at = timezone.now()
    elif consent is False:
        profile.consent_at = None
    profile.full_clean()
    profile.save()
    return profile


def annotator_profiles_ensure(*, user_ids) -> None:
    """Give every listed person a profile, so each has a stable pseudonym before anything about
    them leaves the platform (profiles that exist are left as they are)."""
    AnnotatorProfile.objects.bulk_create([AnnotatorProfile(user_id=int(i)) for i in set(user_ids)],
                                         ignore_conflicts=True, batch_size=1000)


SUSPENSION_MARK = "annotator suspended"


def _judgment_models():
    from annotation.models import ArtifactFlag, AspectScore, PersonalRating, PreferenceJudgment

    return (PreferenceJudgment, AspectScore, PersonalRating, ArtifactFlag)


@transaction.atomic
def membership_suspend(*, project: Project, user, reason: str) -> Membership:
    """Stop a person's work on a project: their leases return to the pool now, and their past
    judgments are marked (never deleted) so curation leaves them out until reinstatement."""
    from annotation.assignment import _units_add, _units_locked
    from annotation.models import Assignment

    membership = Membership.objects.select_for_update().get(project=project, user=user)
    membership.status = Membership.Status.SUSPENDED
    membership.status_reason = reason[:500]
    membership.status_changed_at = timezone.now()
    membership.save(update_fields=["status", "status_reason", "status_changed_at"])
    leases = list(Assignment.objects.select_for_update().filter(project=project, annotator=user,
                                                                status=Assignment.Status.ACTIVE)
                  .values_list("id", "unit_id"))
    if leases:
        Assignment.objects.filter(id__in=[a for a, _ in leases]).update(status=Assignment.Status.EXPIRED,
                                                                         finished_at=timezone.now())
        units = sorted(u for _, u in leases)
        _units_locked(units)
        _units_add(units, leased=-1)
    for model in _judgment_models():
        model.objects.filter(project=project, annotator=user, excluded_reason="").update(
            excluded_reason=f"{SUSPENSION_MARK}: {reason}"[:300])
    return membership


@transaction.atomic
def membership_reinstate(*, project: Project, user) -> Membership:
    """Undo a suspension: the person may work again and their judgments count again."""
    membership = Membership.objects.select_for_update().get(project=project, user=user)
    membership.status = Membership.Status.ACTIVE
    membership.status_reason = ""
    membership.status_changed_at = timezone.now()
    membership.save(update_fields=["status", "status_reason", "status_changed_at"])
    for model in _judgment_models():
        model.objects.filter(project=project, annotator=user,
                             excluded_reason__startswith=SUSPENSION_MARK).update(excluded_reason="")
    return membership
