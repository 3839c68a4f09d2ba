"""Storing what a person decided: one submission per key press (a judgment or a skip), and undo.

A submission is accepted only for a unit the person holds (an active lease) or may still take
(their lease expired but the unit still has room). Its idempotency key makes a retried POST a
no-op that answers "duplicate". Nothing is ever overwritten: undo marks the submission and its
judgment rows retracted and gives the lease back.
"""
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation.assignment import _units_add, require_active
from rest_framework.exceptions import PermissionDenied

from annotation.models import (
    ArtifactFlag, AspectScore, Assignment, Membership, PersonalRating, PreferenceJudgment, Source, Submission, TaskType,
    WorkUnit,
)

ARTIFACT_REASONS = ["anatomy", "hands", "face", "text", "blur", "noise", "duplication", "cut_off", "distortion", "other"]
RATIONALE_MAX_CHARS = 1000
SKIP_REASON_MAX_CHARS = 300
SIDES = ("left", "right", "tie")


class SubmissionRejected(Exception):
    """The submission cannot be stored; the message says why, for the person who sent it."""


@dataclass(frozen=True)
class SubmissionOutcome:
    idempotency_key: str
    status: str  # stored | duplicate | rejected
    message: str = ""
    submission: Submission | None = None


def submission_store(*, membership: Membership, item: dict) -> SubmissionOutcome:
    """Store one submission of `membership`'s person (see docs/workspace-api.md for the item's
    shape); never raises for bad input, answering `rejected` with the reason instead."""
    project, annotator = membership.project, membership.user
    key = item.get("idempotency_key", "")
    if not isinstance(key, str) or not 8 <= len(key) <= 64:
        return SubmissionOutcome(str(key)[:64], "rejected", "idempotency_key must be a string of 8 to 64 characters")
    if not isinstance(item.get("assignment"), int) or isinstance(item.get("assignment"), bool):
        return SubmissionOutcome(key, "rejected", "assignment must be the id of a unit you hold")
    latency = item.get("latency_ms")
    if latency is not None and (isinstance(latency, bool) or not isinstance(latency, int) or not 0 <= latency < 2**31):
        return SubmissionOutcome(key, "rejected", "latency_ms must be a whole number of milliseconds")
    try:
        require_active(membership)
        with transaction.atomic():
            submission = _store(project, annotator, item)
    except AlreadyStored as stored:
        return SubmissionOutcome(key, "duplicate", "already stored", stored.submission)
    except (SubmissionRejected, PermissionDenied) as exc:
        return SubmissionOutcome(key, "rejected", str(exc.detail if isinstance(exc, PermissionDenied) else exc))
    except IntegrityError:
        # A concurrent retry of the same key won the race, or the unit was judged meanwhile.
        existing = Submission.objects.filter(annotator=annotator, idempotency_key=key).first()
        if existing is not None:
            return SubmissionOutcome(key, "duplicate", "already stored", existing)
        return SubmissionOutcome(key, "rejected", "this unit was already judged by you")
    return SubmissionOutcome(key, "stored", "", submission)


class AlreadyStored(Exception):
    def __init__(self, submission: Submission):
        self.submission = submission


def _store(project, annotator, item) -> Submission:
    assignment = (Assignment.objects.select_for_update(of=("self",)).select_related("unit", "unit__comparison")
                  .filter(id=item.get("assignment"), annotator=annotator, project=project).first())
    if assignment is None:
        raise SubmissionRejected(f"unit {item.get('assignment')!r} is not one you hold in this project")
    if assignment.status in (Assignment.Status.COMPLETED, Assignment.Status.SKIPPED):
        # Only here can the key have been stored before: the answer to a retried POST.
        earlier = Submission.objects.filter(annotator=annotator, idempotency_key=item["idempotency_key"]).first()
        if earlier is not None:
            raise AlreadyStored(earlier)
        raise SubmissionRejected("you already answered this unit")
    unit = assignment.unit
    if assignment.status == Assignment.Status.EXPIRED:
        unit = WorkUnit.objects.select_for_update().get(id=unit.id)
        if not unit.is_gold and unit.filled >= project.overlap:
            raise SubmissionRejected("your lease on this unit expired and others have filled it since")
        _units_add([unit.id], leased=1)
    now = timezone.now()
    latency = item.get("latency_ms")
    skipping = bool(item.get("skip"))
    submission = Submission.objects.create(
        project=project, annotator=annotator, assignment=assignment, idempotency_key=item["idempotency_key"],
        kind=Submission.Kind.SKIPPED if skipping else Submission.Kind.JUDGED,
        skip_reason=(item.get("reason") or "")[:SKIP_REASON_MAX_CHARS], latency_ms=latency,
    )
    if not skipping:
        _create_judgments(project, annotator, assignment, unit, submission, item)
    assignment.status = Assignment.Status.SKIPPED if skipping else Assignment.Status.COMPLETED
    assignment.finished_at = now
    assignment.save(update_fields=["status", "finished_at"])
    _units_add([unit.id], leased=-1, done=0 if skipping else 1)
    return submission


def _create_judgments(project, annotator, assignment, unit: WorkUnit, submission, item) -> None:
    common = dict(project=project, source=Source.HUMAN, annotator=annotator, submission=submission,
                  latency_ms=item.get("latency_ms"), is_gold=unit.is_gold)
    task_type = assignment.task_type
    if task_type == TaskType.PAIRWISE:
        comparison = unit.comparison
        left = assignment.left_image_id
        right = comparison.image_b_id if left == comparison.image_a_id else comparison.image_a_id
        to_canonical = {"left": "a" if left == comparison.image_a_id else "b",
                        "right": "a" if right == comparison.image_a_id else "b", "tie": "tie"}
        choices = {"overall": _side(item.get("choice"), "choice")}
        aspects = item.get("aspects") or {}
        if not isinstance(aspects, dict):
            raise SubmissionRejected("aspects must map aspect keys to left / right / tie")
        for key, side in aspects.items():
            if key not in project.aspect_keys:
                raise SubmissionRejected(f"unknown aspect {key!r}; this project's aspects: {', '.join(project.aspect_keys)}")
            choices[key] = _side(side, f"aspects.{key}")
        PreferenceJudgment.objects.bulk_create([
            PreferenceJudgment(comparison=comparison, aspect=aspect, choice=to_canonical[side], left_image_id=left,
                               **common) for aspect, side in choices.items()])
    elif task_type == TaskType.ASPECT_SCORE:
        scores = item.get("scores")
        if not isinstance(scores, dict) or set(scores) != set(project.aspect_keys):
            raise SubmissionRejected(f"scores must give every aspect: {', '.join(project.aspect_keys)}")
        rationale = _rationale(item)
        AspectScore.objects.bulk_create([
            AspectScore(image_id=unit.image_id, aspect=key, rationale=rationale,
                        value=_on_scale(value, project.score_scale, f"scores.{key}"), **common)
            for key, value in scores.items()])
    elif task_type == TaskType.PERSONAL_RATING:
        PersonalRating.objects.create(image_id=unit.image_id, value=_on_scale(item.get("rating"), project.rating_scale,
                                                                               "rating"), **common)
    elif task_type == TaskType.ARTIFACT_FLAG:
        has_artifacts = item.get("has_artifacts")
        if not isinstance(has_artifacts, bool):
            raise SubmissionRejected("has_artifacts must be true or false")
        reasons = item.get("reasons") or []
        if not isinstance(reasons, list) or any(r not in ARTIFACT_REASONS for r in reasons):
            raise SubmissionRejected(f"reasons must come from: {', '.join(ARTIFACT_REASONS)}")
        if reasons and not has_artifacts:
            raise SubmissionRejected("reasons are only given for an image with artifacts")
        ArtifactFlag.objects.create(image_id=unit.image_id, has_artifacts=has_artifacts,
                                    reasons=sorted(set(reasons)), **common)


def _side(value, field) -> str:
    if value not in SIDES:
        raise SubmissionRejected(f"{field} must be one of left, right, tie (got {value!r})")
    return value


def _on_scale(value, top: int, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
        raise SubmissionRejected(f"{field} must be a whole number from 1 to {top} (got {value!r})")
    return value


def _rationale(item) -> str:
    rationale = item.get("rationale") or ""
    if not isinstance(rationale, str):
        raise SubmissionRejected("rationale must be text")
    if len(rationale) > RATIONALE_MAX_CHARS:
        raise SubmissionRejected(f"rationale is {len(rationale)} characters, over the {RATIONALE_MAX_CHARS}-character limit")
    return rationale


JUDGMENT_MODELS = (PreferenceJudgment, AspectScore, PersonalRating, ArtifactFlag)


def submission_undo_last(*, membership: Membership) -> Assignment | None:
    """Retract the person's latest live submission in the project (within WORK_UNDO_MINUTES) and
    lease its unit to them again; None when there is nothing to undo."""
    require_active(membership)
    project, annotator = membership.project, membership.user
    now = timezone.now()
    with transaction.atomic():
        submission = (Submission.objects.select_for_update()
                      .filter(project=project, annotator=annotator, retracted_at__isnull=True,
                              created_at__gte=now - timedelta(minutes=settings.WORK_UNDO_MINUTES))
                      .order_by("-id").first())
        if submission is None:
            return None
        submission.retracted_at = now
        submission.save(update_fields=["retracted_at"])
        for model in JUDGMENT_MODELS:
            model.objects.filter(submission=submission).update(retracted_at=now)
        assignment = Assignment.objects.select_for_update().get(id=submission.assignment_id)
        assignment.status = Assignment.Status.ACTIVE
        assignment.finished_at = None
        assignment.expires_at = now + timedelta(minutes=settings.WORK_LEASE_MINUTES)
        assignment.save(update_fields=["status", "finished_at", "expires_at"])
        _units_add([assignment.unit_id], leased=1, done=-1 if submission.kind == Submission.Kind.JUDGED else 0)
    return assignment
