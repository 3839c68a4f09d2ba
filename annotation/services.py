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
from annotation.image_sources import SourcePolicy
from annotation.importing import ImportSummary, LineError, manifest_import
from annotation.models import AnnotatorProfile, ImportJob, ImportLineError, Membership, Project, TaskType
from core.jobs import JobCancelled, job_claim
from core.statistics import statistics_refresh

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
    annotator_profiles_ensure(user_ids=[creator.pk])
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
    """Add `user` to `project` with `role`, or change the role of an existing member. A member
    has a profile (hence the pseudonym exports name them by) from then on."""
    if role not in Membership.Role.values:
        raise ValidationError({"role": f"unknown role {role!r}; choose from {Membership.Role.values}"})
    membership, created = Membership.objects.get_or_create(project=project, user=user, defaults={"role": role})
    annotator_profiles_ensure(user_ids=[user.pk])
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


def import_job_run(*, job_id: int) -> ImportJob:
    """Run a queued import job to its end, recording progress and per-line errors with each chunk.

    Safe to deliver twice: only a queued job, or a running one whose worker died, is claimed. A
    job taken over goes on after its last committed chunk (its lines, errors and counters were
    committed with it); then the project's work units are opened."""
    lease = job_claim(ImportJob, job_id)
    job = ImportJob.objects.select_related("project").get(pk=job_id)
    if lease is None:  # finished, or another worker has it
        return job
    summary = ImportSummary(lines=job.lines_done, images_created=job.images_created, duplicates=job.duplicates,
                            prompts_created=job.prompts_created, comparisons_created=job.comparisons_created)
    rejected = job.rejected

    def on_chunk(chunk: ImportSummary, errors: list[LineError]) -> None:
        """Runs inside the chunk's transaction: the chunk and the job's progress commit together."""
        nonlocal rejected
        ImportLineError.objects.bulk_create(
            [ImportLineError(job=job, line=e.line, field=e.field, message=e.message[:1000]) for e in errors])
        rejected += len(errors)
        lease.beat(**_summary_fields(chunk), rejected=rejected)

    with lease.running():
        try:
            policy = import_policy_for_api(job.images_root)
            with default_storage.open(job.manifest_key, "rb") as manifest:
                manifest_import(project=job.project, lines=manifest, policy=policy, skip_lines=job.lines_done,
                                max_pairs_per_prompt=job.max_pairs_per_prompt, on_chunk=on_chunk, summary=summary,
                                before_chunk=lambda: lease.beat())
        except JobCancelled:
            _import_finish(job.project)
            lease.cancelled(f"cancelled after {summary.lines} of {job.lines_total} lines; what they imported is kept")
        except ValidationError as exc:  # images_root no longer allowed (IMPORT_LOCAL_ROOTS changed)
            lease.fail("; ".join(exc.messages))
        except FileNotFoundError as exc:
            lease.fail(f"cannot read the manifest: {exc}")
        else:
            _import_finish(job.project)
            lease.succeed(f"{summary.images_created} images imported, {summary.duplicates} duplicates, "
                          f"{rejected} lines rejected")
    job.refresh_from_db()
    return job


def import_job_finish(*, job_id: int) -> None:
    """What follows the writes of an import that ended without its worker (cancelled after the
    worker died): work units for the comparisons it created, and planner statistics."""
    job = ImportJob.objects.select_related("project").filter(pk=job_id).first()
    if job is not None and job.lines_done:
        _import_finish(job.project)


def _import_finish(project: Project) -> None:
    """What follows an import's writes: work units for its comparisons, and planner statistics."""
    from annotation.models import Comparison, Image, Prompt, WorkUnit

    statistics_refresh(Prompt, Image, Comparison)
    work_units_open(project=project)
    statistics_refresh(WorkUnit)


def _summary_fields(summary: ImportSummary) -> dict:
    return {"lines_done": summary.lines, "images_created": summary.images_created, "duplicates": summary.duplicates,
            "prompts_created": summary.prompts_created, "comparisons_created": summary.comparisons_created}


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


def annotator_profile_ensure(*, user) -> AnnotatorProfile:
    """The person's profile, created bare (no consent, no demographics) if they have none, so the
    pseudonym they are shown is the one every export will use."""
    annotator_profiles_ensure(user_ids=[user.pk])
    return AnnotatorProfile.objects.get(user=user)


def member_profiles_ensure(*, project: Project) -> None:
    """Every member of `project` has a profile, so a members list names each by the pseudonym
    exports use (members added before profiles came with membership, or outside
    `membership_set`, may have none yet)."""
    missing = list(Membership.objects.filter(project=project, user__annotator_profile__isnull=True)
                   .values_list("user_id", flat=True))
    if missing:
        annotator_profiles_ensure(user_ids=missing)


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
    annotator_profiles_ensure(user_ids=[user.pk])  # the answer names the member by pseudonym too
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
    annotator_profiles_ensure(user_ids=[user.pk])  # the answer names the member by pseudonym too
    membership.status = Membership.Status.ACTIVE
    membership.status_reason = ""
    membership.status_changed_at = timezone.now()
    membership.save(update_fields=["status", "status_reason", "status_changed_at"])
    for model in _judgment_models():
        model.objects.filter(project=project, annotator=user,
                             excluded_reason__startswith=SUSPENSION_MARK).update(excluded_reason="")
    return membership
