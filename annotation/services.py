"""Every write to projects, memberships and import jobs goes through these functions."""
import uuid
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.db import models, transaction
from django.utils import timezone

from annotation.assignment import work_units_open
from annotation.image_sources import ImageSourceError, SourcePolicy, s3_root_normalise
from annotation.importing import ImportSummary, LineError, manifest_import, manifest_line_count
from annotation.models import (
    AnnotatorProfile, Comparison, Image, ImportJob, ImportLineError, Membership, Project, Prompt,
    RemovedMemberSuspension, TaskType, WorkUnit,
)
from annotation.selectors import project_require_writable, project_role
from annotation.uploads import ManifestTooLarge
from core.audit import audit_record
from core.jobs import JobCancelled, job_claim
from core.models import AuditAction
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
    _validate_adaptive(project)
    project.full_clean()
    project.save()
    Membership.objects.create(project=project, user=creator, role=Membership.Role.RESEARCHER)
    annotator_profiles_ensure(user_ids=[creator.pk])
    audit_record(actor=creator, action=AuditAction.MEMBER_ADDED, project=project, target=creator.get_username(),
                 details={"role": Membership.Role.RESEARCHER})
    return project


@transaction.atomic
def project_update(*, project: Project, actor=None, **fields) -> Project:
    """Change a project's settings as `actor`; archiving it (or bringing it back) is recorded."""
    _validate_project_fields(task_types=fields.get("task_types"), aspects=fields.get("aspects"))
    if "aspects" in fields:
        fields["aspects"] = _normalise_aspects(fields["aspects"])
    was_archived = project.is_archived
    adaptive_before = _adaptive_fields(project)
    for name, value in fields.items():
        setattr(project, name, value)
    _validate_adaptive(project)
    project.full_clean()
    project.save()
    if "task_types" in fields:
        work_units_open(project=project)
    if project.collection == Project.Collection.ADAPTIVE and _adaptive_fields(project) != adaptive_before:
        # Switched to adaptive, or its settings changed: priorities are recomputed off the request path,
        # and the budget's count is taken again from the units on the next lease (it was not kept
        # while the project had no budget).
        from annotation.models import AdaptiveBudget
        from annotation.tasks import adaptive_refresh_task

        AdaptiveBudget.objects.filter(project=project).delete()

        transaction.on_commit(lambda: adaptive_refresh_task.delay(project.id))
    if project.is_archived != was_archived:
        audit_record(actor=actor, action=AuditAction.ARCHIVED, project=project, target=f"project {project.slug}",
                     details={"archived": project.is_archived})
    return project


def _adaptive_fields(project: Project) -> tuple:
    return (project.collection, project.min_votes, project.max_votes, project.confidence_target,
            project.judgment_budget)


ADAPTIVE_FIELD_NAMES = {"budget": "judgment_budget"}


def _validate_adaptive(project: Project) -> None:
    """An adaptive project's settings, refused with the setting at fault named (curation.adaptive);
    the budget is checked against min_votes x the project's pairwise units."""
    from curation.adaptive import AdaptiveSettings, AdaptiveSettingsError

    if project.collection != Project.Collection.ADAPTIVE:
        return
    units = None
    if project.judgment_budget is not None and project.pk:
        units = WorkUnit.objects.filter(project=project, task_type=TaskType.PAIRWISE, is_gold=False).count()
    try:
        AdaptiveSettings(min_votes=project.min_votes, max_votes=project.max_votes,
                         confidence_target=project.confidence_target,
                         budget=project.judgment_budget).validate(units=units)
    except AdaptiveSettingsError as exc:
        raise ValidationError({ADAPTIVE_FIELD_NAMES.get(exc.field, exc.field): str(exc)}) from exc


def _project_rows_deleted_first(project: Project) -> list[models.QuerySet]:
    """The project's own rows (through a cascading foreign key to it) that protect other such rows
    (judgments their images, comparisons and submissions; an export its filter run): PROTECT
    refuses a deletion even of rows that go in the same cascade, so these go first."""
    owned = {f.related_model: f.field.name for f in Project._meta.get_fields(include_hidden=True)
             if f.one_to_many and f.auto_created and f.on_delete is models.CASCADE}
    return [model.objects.filter(**{field: project}) for model, field in owned.items()
            if any(f.many_to_one and f.remote_field.on_delete is models.PROTECT and f.related_model in owned
                   for f in model._meta.fields)]


@transaction.atomic
def project_delete(*, project: Project, actor, confirmation: str) -> dict[str, int]:
    """Delete a project with everything in it, its raw judgments too: the one way judgments are
    ever deleted. Only a platform superuser may, typing the project's slug as `confirmation`; the
    audit log keeps the deletion with the counts of what went. Returns those counts."""
    if actor is None or not actor.is_superuser:
        raise PermissionDenied("Only a platform superuser may delete a project with its judgments.")
    if confirmation != project.slug:
        raise ValidationError({"confirmation": f"type the project's slug {project.slug!r} exactly to delete it"})
    counts = {str(model._meta.verbose_name_plural): model.objects.filter(project=project).count()
              for model in _judgment_models()}
    audit_record(actor=actor, action=AuditAction.DELETED, project=project, target=f"project {project.slug}",
                 details={"name": project.name, "judgments": counts})
    for rows in _project_rows_deleted_first(project):
        rows.delete()
    project.delete()
    return counts


@transaction.atomic
def items_hide(*, items: models.QuerySet, actor=None, hidden: bool = True) -> int:
    """Hide prompts, images or comparisons (a queryset of one of them), or show them again with
    `hidden=False`; returns how many of `items` changed. Hidden, an item gets no more work, and
    hiding a prompt or an image hides what is built on it (its images, its comparisons). Nothing
    is deleted: what was judged stays, with its judgments. Recorded per project."""
    model = items.model
    if model not in (Prompt, Image, Comparison):
        raise ValueError(f"only prompts, images and comparisons are hidden, not {model.__name__}")
    rows = list(items.filter(hidden_at__isnull=hidden).values_list("id", "project_id"))
    ids = [i for i, _ in rows]
    stamp = timezone.now() if hidden else None
    model.objects.filter(id__in=ids).update(hidden_at=stamp)
    if model is Prompt:
        Image.objects.filter(prompt_id__in=ids, hidden_at__isnull=hidden).update(hidden_at=stamp)
        Comparison.objects.filter(prompt_id__in=ids, hidden_at__isnull=hidden).update(hidden_at=stamp)
    elif model is Image:
        (Comparison.objects.filter(models.Q(image_a_id__in=ids) | models.Q(image_b_id__in=ids))
         .filter(hidden_at__isnull=hidden).update(hidden_at=stamp))
    for project in Project.objects.filter(id__in={p for _, p in rows}):
        audit_record(actor=actor, action=AuditAction.ARCHIVED, project=project,
                     target=f"{len(rows)} {model._meta.verbose_name_plural}",
                     details={"hidden": hidden, "ids": sorted(i for i, p in rows if p == project.pk)})
    return len(rows)


def _require_admin_actor(project: Project, actor, doing: str) -> None:
    """Roles around the admin role are the project admins' to change (platform admins count as
    such); no actor means the platform itself (a management command)."""
    if actor is not None and project_role(user=actor, project=project) != Membership.Role.ADMIN:
        raise PermissionDenied(f"Only an admin of project {project.slug!r} may {doing}.")


def _keep_an_admin(project: Project, user, doing: str, field: str) -> None:
    """Refuse to leave a project without an admin. Locks the admin rows, so two admins demoting
    each other at once cannot both succeed."""
    admins = list(Membership.objects.select_for_update().filter(project=project, role=Membership.Role.ADMIN)
                  .values_list("user_id", flat=True))
    if admins == [user.pk]:
        raise ValidationError({field: f"{user.get_username()!r} is the last admin of project {project.slug!r}, "
                                      f"and a project keeps at least one admin: make someone else admin before "
                                      f"{doing}"})


@transaction.atomic
def membership_set(*, project: Project, user, role: str, actor=None) -> Membership:
    """Add `user` to `project` with `role`, or change the role of an existing member, as `actor`
    (None: the platform itself). Granting the admin role, or changing an admin's, is for the
    project's admins, and the last admin stays one. Someone removed while suspended comes back
    suspended. A member has a profile (hence the pseudonym exports name them by) from then on."""
    if role not in Membership.Role.values:
        raise ValidationError({"role": f"unknown role {role!r}; choose from {Membership.Role.values}"})
    membership = Membership.objects.select_for_update().filter(project=project, user=user).first()
    annotator_profiles_ensure(user_ids=[user.pk])
    old_role = membership.role if membership else None
    if old_role == role:
        return membership
    if role == Membership.Role.ADMIN:
        _require_admin_actor(project, actor, "grant the admin role")
    if old_role == Membership.Role.ADMIN:
        _require_admin_actor(project, actor, f"change the role of admin {user.get_username()!r}")
        _keep_an_admin(project, user, "changing their role", "role")
    if membership is not None:
        membership.role = role
        membership.save(update_fields=["role"])
        audit_record(actor=actor, action=AuditAction.ROLE_CHANGED, project=project, target=user.get_username(),
                     details={"from": old_role, "to": role})
        return membership
    kept = RemovedMemberSuspension.objects.select_for_update().filter(project=project, user=user).first()
    membership = Membership.objects.create(project=project, user=user, role=role)
    if kept is not None:
        membership.status, membership.status_reason = Membership.Status.SUSPENDED, kept.reason
        membership.status_changed_at = kept.suspended_at
        membership.save(update_fields=["status", "status_reason", "status_changed_at"])
        kept.delete()
    audit_record(actor=actor, action=AuditAction.MEMBER_ADDED, project=project, target=user.get_username(),
                 details={"role": role, "suspended": kept is not None})
    return membership


@transaction.atomic
def membership_remove(*, project: Project, user, actor=None) -> None:
    """Take `user` out of `project`, as `actor`. Removing an admin is for the project's admins,
    and the last admin stays. A suspended member's suspension is kept (RemovedMemberSuspension)
    and comes back with them; their judgments stay set aside meanwhile."""
    membership = Membership.objects.select_for_update().filter(project=project, user=user).first()
    if membership is None:
        return
    if membership.role == Membership.Role.ADMIN:
        _require_admin_actor(project, actor, f"remove admin {user.get_username()!r}")
        _keep_an_admin(project, user, "removing them", "member")
    suspended = membership.status == Membership.Status.SUSPENDED
    if suspended:
        RemovedMemberSuspension.objects.update_or_create(
            project=project, user=user,
            defaults={"reason": membership.status_reason, "suspended_at": membership.status_changed_at})
    membership.delete()
    audit_record(actor=actor, action=AuditAction.MEMBER_REMOVED, project=project, target=user.get_username(),
                 details={"role": membership.role, "suspended": suspended})


def researcher_grant(*, user) -> None:
    """Let `user` create projects (membership in the Researchers group)."""
    group, _ = Group.objects.get_or_create(name=RESEARCHERS_GROUP)
    group.permissions.add(Permission.objects.get(codename="add_project", content_type__app_label="annotation"))
    user.groups.add(group)


def import_policy_for_api(images_root: str) -> SourcePolicy:
    """A server-side import may read local files only under IMPORT_LOCAL_ROOTS; an `images_root`
    of the form s3://bucket/prefix makes relative paths S3 keys under that prefix (a manifest may
    name any s3:// key anyway, so no list of buckets is kept)."""
    if not images_root:
        return SourcePolicy.from_settings(images_root=None)
    if images_root.startswith("s3://"):
        try:
            return SourcePolicy.from_settings(images_root=None, s3_root=s3_root_normalise(images_root))
        except ImageSourceError as exc:
            raise ValidationError({"images_root": str(exc)}) from None
    root = Path(images_root).resolve()
    allowed = [Path(r).resolve() for r in settings.IMPORT_LOCAL_ROOTS]
    if not any(root.is_relative_to(a) for a in allowed):
        raise ValidationError({"images_root": f"{images_root!r} is not under a folder listed in IMPORT_LOCAL_ROOTS"})
    return SourcePolicy.from_settings(images_root=root)


def import_job_create(*, project: Project, creator, manifest: File | bytes, images_root: str = "",
                      max_pairs_per_prompt: int | None = None) -> ImportJob:
    """Store the manifest and queue an import job for it; the job starts after commit.

    A manifest file (an upload is a temporary file on disk) is counted and stored chunk by
    chunk, never read whole into memory. Raises ManifestTooLarge past IMPORT_MANIFEST_MAX_BYTES."""
    project_require_writable(project=project)  # an archived project takes no imports
    import_policy_for_api(images_root)  # refuse a forbidden root now, not in the worker
    if isinstance(manifest, bytes):
        manifest = ContentFile(manifest)
    if manifest.size > settings.IMPORT_MANIFEST_MAX_BYTES:
        raise ManifestTooLarge()
    lines_total = manifest_line_count(manifest)
    if not lines_total:
        raise ValidationError({"manifest": "the manifest is empty"})
    key = default_storage.save(f"imports/{uuid.uuid4().hex}.jsonl", manifest)
    with transaction.atomic():
        job = ImportJob.objects.create(
            project=project, created_by=creator, manifest_key=key, images_root=images_root,
            max_pairs_per_prompt=max_pairs_per_prompt, lines_total=lines_total,
        )
        audit_record(actor=creator, action=AuditAction.JOB_STARTED, project=project, target=f"import job {job.pk}")
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
            [ImportLineError(job=job, line=e.line, field=e.field[:64], message=e.message[:1000]) for e in errors])
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
def membership_suspend(*, project: Project, user, reason: str, actor=None) -> Membership:
    """Stop a person's work on a project: their leases return to the pool now, and their past
    judgments are marked (never deleted) so curation leaves them out until reinstatement."""
    from annotation.assignment import _units_locked, units_counters_move
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
        units_counters_move(project, [(units, -1, 0)])
    for model in _judgment_models():
        model.objects.filter(project=project, annotator=user, excluded_reason="").update(
            excluded_reason=f"{SUSPENSION_MARK}: {reason}"[:300])
    audit_record(actor=actor, action=AuditAction.SUSPENDED, project=project, target=user.get_username(),
                 details={"reason": membership.status_reason})
    return membership


@transaction.atomic
def membership_reinstate(*, project: Project, user, actor=None) -> Membership:
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
    audit_record(actor=actor, action=AuditAction.REINSTATED, project=project, target=user.get_username())
    return membership
