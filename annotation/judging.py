"""Storing what a person decided: one submission per key press (a judgment or a skip), and undo.

A submission is accepted only for a unit the person holds (an active lease) or may still take
(their lease expired but the unit still has room). Its idempotency key makes a retried POST a
no-op that answers "duplicate"; a different item sent under a key already used answers
"conflict", and the first stays. Nothing is ever overwritten: undo marks the submission and its
judgment rows retracted and gives the lease back.
"""
import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from rest_framework.exceptions import PermissionDenied

from annotation.adaptive_collection import adaptive_refresh_now_and_then, is_adaptive
from annotation.assignment import require_active, units_counters_move
from annotation.models import (
    ArtifactFlag, AspectScore, Assignment, Membership, PersonalRating, PreferenceJudgment, Source, Submission, TaskType,
    WorkUnit,
)
from annotation.study_quota import study_participant_for_work, study_units_given
from core.text import UNSTORABLE, holds_unstorable_text

ARTIFACT_REASONS = ["anatomy", "hands", "face", "text", "blur", "noise", "duplication", "cut_off", "distortion", "other"]
RATIONALE_MAX_CHARS = 1000
SKIP_REASON_MAX_CHARS = 300
SIDES = ("left", "right", "tie")


class SubmissionRejected(Exception):
    """The submission cannot be stored; the message says why, for the person who sent it."""


@dataclass(frozen=True)
class SubmissionOutcome:
    idempotency_key: str
    status: str  # stored | duplicate | conflict | rejected
    message: str = ""
    submission: Submission | None = None


def submission_store(*, membership: Membership, item: dict) -> SubmissionOutcome:
    """Store one submission; see `submissions_store`."""
    return submissions_store(membership=membership, items=[item])[0]


def submissions_store(*, membership: Membership, items: list[dict]) -> list[SubmissionOutcome]:
    """Store a batch of one person's submissions (docs/workspace-api.md gives an item's shape),
    answering each with stored / duplicate / conflict / rejected and the reason; never raises for
    bad input.

    The batch is written set-wise in one transaction: its assignments are locked together, and
    submissions, judgments and counters go in a few statements. Should a concurrent retry of a
    key win a race (a unique violation), the batch is rolled back and its items are stored one
    by one, so one item's trouble never costs its neighbours."""
    outcomes: list[SubmissionOutcome | None] = [_shape_problem(item) for item in items]
    try:
        require_active(membership)
    except PermissionDenied as exc:
        return [o or SubmissionOutcome(item["idempotency_key"], "rejected", str(exc.detail))
                for o, item in zip(outcomes, items)]
    todo = [i for i, o in enumerate(outcomes) if o is None]
    try:
        with transaction.atomic():
            _store_batch(membership, items, todo, outcomes)
    except IntegrityError:
        if len(todo) == 1:
            key = items[todo[0]]["idempotency_key"]
            earlier = Submission.objects.filter(annotator=membership.user, idempotency_key=key).first()
            outcomes[todo[0]] = (_repeat_outcome(earlier, items[todo[0]]) if earlier else
                                 SubmissionOutcome(key, "rejected", "this unit was already judged by you"))
        else:
            for i in todo:
                outcomes[i] = submissions_store(membership=membership, items=[items[i]])[0]
    return outcomes


def item_sha256(item: dict) -> str:
    """The fingerprint of a submitted item: its JSON with sorted keys, the idempotency key left out."""
    body = {name: value for name, value in item.items() if name != "idempotency_key"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def _repeat_outcome(earlier: Submission, item: dict) -> SubmissionOutcome:
    """The answer to an item whose key is stored already: the same item again is a retry; another
    item under that key is a conflict, and the stored one stands (a submission stored before
    fingerprints were kept counts as the same)."""
    key = earlier.idempotency_key
    if earlier.item_sha256 and earlier.item_sha256 != item_sha256(item):
        return SubmissionOutcome(key, "conflict", "this idempotency_key was already used for a different answer, "
                                                  "which is kept; this one was not stored", earlier)
    return SubmissionOutcome(key, "duplicate", "already stored", earlier)


def _shape_problem(item) -> SubmissionOutcome | None:
    key = item.get("idempotency_key", "") if isinstance(item, dict) else ""
    if not isinstance(key, str) or not 8 <= len(key) <= 64 or UNSTORABLE.search(key):
        # The key is echoed in the answer: one UTF-8 cannot encode would fail the whole batch's answer.
        return SubmissionOutcome(UNSTORABLE.sub("\ufffd", str(key)[:64]), "rejected",
                                 "idempotency_key must be a string of 8 to 64 characters, without NUL characters "
                                 "or unpaired surrogates")
    if holds_unstorable_text(item):  # PostgreSQL could not store it (core.text)
        return SubmissionOutcome(key, "rejected", "text must not contain NUL characters or unpaired surrogates")
    if not isinstance(item.get("assignment"), int) or isinstance(item.get("assignment"), bool):
        return SubmissionOutcome(key, "rejected", "assignment must be the id of a unit you hold")
    latency = item.get("latency_ms")
    if latency is not None and (isinstance(latency, bool) or not isinstance(latency, int) or not 0 <= latency < 2**31):
        return SubmissionOutcome(key, "rejected", "latency_ms must be a whole number of milliseconds")
    return None


def _store_batch(membership, items, todo, outcomes) -> None:
    """Decide every item of `todo` and write the accepted ones; caller holds a transaction."""
    project, annotator = membership.project, membership.user
    # A study participant's row is locked before their assignments, in the order the lease path takes.
    participant = (study_participant_for_work(project=project, annotator=annotator, lock=True)
                   if membership.study_participant else None)
    quota_room = None if participant is None else participant.link.quota - study_units_given(participant=participant)
    assignments = {a.id: a for a in Assignment.objects.select_for_update(of=("self",))
                   .select_related("unit", "unit__comparison")
                   .filter(id__in={items[i]["assignment"] for i in todo}, annotator=annotator, project=project)
                   .order_by("id")}
    now = timezone.now()
    accepted: list[tuple[int, Submission, list]] = []
    reactivated, keys_in_batch = [], set()
    for i in todo:
        item = items[i]
        key = item["idempotency_key"]
        try:
            if key in keys_in_batch:
                raise SubmissionRejected("the same idempotency_key appears twice in this batch")
            assignment = assignments.get(item["assignment"])
            if assignment is None:
                raise SubmissionRejected(f"unit {item['assignment']!r} is not one you hold in this project")
            if assignment.status in (Assignment.Status.COMPLETED, Assignment.Status.SKIPPED):
                # Only here can the key have been stored before: the answer to a retried POST.
                earlier = Submission.objects.filter(annotator=annotator, idempotency_key=key).first()
                if earlier is not None:
                    outcomes[i] = _repeat_outcome(earlier, item)
                    continue
                raise SubmissionRejected("you already answered this unit")
            skipping = bool(item.get("skip"))
            judgments = [] if skipping else _judgments_for(project, annotator, assignment, item)
            if assignment.status == Assignment.Status.EXPIRED:
                if quota_room is not None and quota_room <= 0:
                    raise SubmissionRejected(
                        f"your lease on this unit expired and your study's quota of {participant.link.quota} units "
                        f"is reached with the units you judged and hold since; this answer was not stored")
                _reclaim_expired(project, assignment)
                reactivated.append(assignment.unit_id)
                if quota_room is not None:
                    quota_room -= 1
        except SubmissionRejected as exc:
            outcomes[i] = SubmissionOutcome(key, "rejected", str(exc))
            continue
        keys_in_batch.add(key)
        assignment.status = Assignment.Status.SKIPPED if skipping else Assignment.Status.COMPLETED
        submission = Submission(project=project, annotator=annotator, assignment=assignment, idempotency_key=key,
                                item_sha256=item_sha256(item), kind=Submission.Kind.SKIPPED if skipping else Submission.Kind.JUDGED,
                                skip_reason=str(item.get("reason") or "")[:SKIP_REASON_MAX_CHARS],
                                latency_ms=item.get("latency_ms"))
        accepted.append((i, submission, judgments))
    if not accepted:
        return
    Submission.objects.bulk_create([s for _, s, _ in accepted])
    by_model: dict[type, list] = {}
    for _, submission, judgments in accepted:
        for judgment in judgments:
            judgment.submission = submission
            by_model.setdefault(type(judgment), []).append(judgment)
    for model, rows in by_model.items():
        model.objects.bulk_create(rows)
    for kind, status in ((Submission.Kind.JUDGED, Assignment.Status.COMPLETED),
                         (Submission.Kind.SKIPPED, Assignment.Status.SKIPPED)):
        ids = [s.assignment_id for _, s, _ in accepted if s.kind == kind]
        if ids:
            Assignment.objects.filter(id__in=ids).update(status=status, finished_at=now)
    judged = [s.assignment.unit_id for _, s, _ in accepted if s.kind == Submission.Kind.JUDGED]
    skipped = [s.assignment.unit_id for _, s, _ in accepted if s.kind == Submission.Kind.SKIPPED]
    adaptive = is_adaptive(project)
    votes = [(s.assignment.unit_id, annotator.id, j.choice) for _, s, judgments in accepted for j in judgments
             if isinstance(j, PreferenceJudgment) and j.aspect == "overall" and not j.is_gold] if adaptive else []
    units_counters_move(project, [(reactivated, 1, 0), (judged, -1, 1), (skipped, -1, 0)], votes=votes)
    if adaptive:
        adaptive_refresh_now_and_then(project, len(votes))
    for i, submission, _ in accepted:
        outcomes[i] = SubmissionOutcome(submission.idempotency_key, "stored", "", submission)


def _reclaim_expired(project, assignment) -> None:
    """An expired lease may still be answered while its unit has room (the unit gets locked)."""
    unit = WorkUnit.objects.select_for_update().get(id=assignment.unit_id)
    room = project.max_votes if is_adaptive(project, assignment.task_type) else project.overlap
    if not unit.is_gold and unit.filled >= room:
        raise SubmissionRejected("your lease on this unit expired and others have filled it since")


def _judgments_for(project, annotator, assignment, item) -> list:
    """The unsaved judgment rows one answer makes (one per aspect for pairs and scores)."""
    unit = assignment.unit
    common = dict(project=project, source=Source.HUMAN, annotator=annotator, latency_ms=item.get("latency_ms"),
                  is_gold=unit.is_gold)
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
        return [PreferenceJudgment(comparison=comparison, aspect=aspect, choice=to_canonical[side], left_image_id=left,
                                   **common) for aspect, side in choices.items()]
    if task_type == TaskType.ASPECT_SCORE:
        scores = item.get("scores")
        if not isinstance(scores, dict) or set(scores) != set(project.aspect_keys):
            raise SubmissionRejected(f"scores must give every aspect: {', '.join(project.aspect_keys)}")
        rationale = _rationale(item)
        return [AspectScore(image_id=unit.image_id, aspect=key, rationale=rationale,
                            value=_on_scale(value, project.score_scale, f"scores.{key}"), **common)
                for key, value in scores.items()]
    if task_type == TaskType.PERSONAL_RATING:
        return [PersonalRating(image_id=unit.image_id, value=_on_scale(item.get("rating"), project.rating_scale,
                                                                      "rating"), **common)]
    has_artifacts = item.get("has_artifacts")
    if not isinstance(has_artifacts, bool):
        raise SubmissionRejected("has_artifacts must be true or false")
    reasons = item.get("reasons") or []
    if not isinstance(reasons, list) or any(r not in ARTIFACT_REASONS for r in reasons):
        raise SubmissionRejected(f"reasons must come from: {', '.join(ARTIFACT_REASONS)}")
    if reasons and not has_artifacts:
        raise SubmissionRejected("reasons are only given for an image with artifacts")
    return [ArtifactFlag(image_id=unit.image_id, has_artifacts=has_artifacts, reasons=sorted(set(reasons)), **common)]


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
        assignment.expires_at = now + project.lease_length
        assignment.save(update_fields=["status", "finished_at", "expires_at"])
        # Adaptive: the undone vote leaves the unit's evidence (under today's reliabilities; a refresh recomputes).
        undone = (PreferenceJudgment.objects.filter(submission=submission, aspect="overall", is_gold=False).first()
                  if is_adaptive(project, assignment.task_type) else None)
        units_counters_move(project, [([assignment.unit_id], 1, -1 if submission.kind == Submission.Kind.JUDGED else 0)],
                            sign=-1, votes=[(assignment.unit_id, annotator.id, undone.choice)] if undone else [])
    return assignment
