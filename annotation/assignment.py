"""Handing out work: opening units for a project's task types, leasing the next units to a
person, and returning expired leases to the pool.

Concurrency: picking locks the chosen unit rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so
concurrent annotators pass over each other's rows instead of queueing) and every counter
change happens under that row lock, in the same transaction as the assignment rows.
"""
import random
import time
from collections import Counter

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.exceptions import PermissionDenied

from annotation.adaptive_collection import (
    adaptive_budget_left, adaptive_fresh_priority, adaptive_units_update, is_adaptive,
)
from annotation.models import Assignment, Membership, Project, TaskType, WorkUnit
from annotation.selectors import project_require_writable
from annotation.study_quota import study_participant_for_work, study_require_task_type, study_units_given

MAX_LEASE_BATCH = 10


def work_units_open(*, project: Project) -> int:
    """Create the missing units of every task type switched on in `project` (idempotent, set-based)."""
    created = 0
    with transaction.atomic(), connection.cursor() as cursor:
        unit = WorkUnit._meta.db_table
        for task_type in project.task_types:
            priority = adaptive_fresh_priority(project) if is_adaptive(project, task_type) else 0
            if task_type == TaskType.PAIRWISE:
                source, subject, subject_id = "annotation_comparison", "comparison_id", "s.id"
            else:
                source, subject, subject_id = "annotation_image", "image_id", "s.id"
            cursor.execute(
                f'INSERT INTO "{unit}" (project_id, task_type, prompt_id, {subject}, is_gold, done, leased, filled, '
                f"evidence, priority) "
                f"SELECT s.project_id, %s, s.prompt_id, {subject_id}, %s, 0, 0, 0, '[]', {int(priority)} "
                f'FROM "{source}" s '
                f'WHERE s.project_id = %s AND NOT EXISTS '
                f'(SELECT 1 FROM "{unit}" u WHERE u.{subject} = s.id AND u.task_type = %s) ORDER BY s.id',
                [task_type, False, project.id, task_type],
            )
            created += cursor.rowcount
    return created


def require_active(membership: Membership) -> None:
    """Work needs an active membership of a project that is not archived (callers pass one fetched
    with its project)."""
    project_require_writable(project=membership.project)
    if membership.status == Membership.Status.SUSPENDED:
        raise PermissionDenied("Your work on this project is suspended"
                               + (f": {membership.status_reason}" if membership.status_reason else "."))


def leases_expire(*, project: Project, now=None) -> int:
    """Return every lease past its deadline to the pool; returns how many.

    Runs before every lease, so it is one statement when nothing has expired."""
    now = now or timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f'UPDATE "{Assignment._meta.db_table}" SET status = %s, finished_at = %s '
            f"WHERE project_id = %s AND status = %s AND expires_at < %s RETURNING unit_id",
            [Assignment.Status.EXPIRED, now, project.id, Assignment.Status.ACTIVE, now])
        unit_ids = sorted(row[0] for row in cursor.fetchall())
        if unit_ids:
            _units_locked(unit_ids)  # in id order, so two sweeps cannot deadlock
            units_counters_move(project, [(unit_ids, -1, 0)])
    return len(unit_ids)


_last_sweep: dict[int, float] = {}


def _sweep_expired_now_and_then(project) -> None:
    """Expire stale leases before leasing, at most every WORK_EXPIRY_SWEEP_SECONDS per project and
    process: a lease may outlive its deadline by that much, and the hot path saves a statement."""
    now = time.monotonic()
    if now - _last_sweep.get(project.id, -1e9) >= settings.WORK_EXPIRY_SWEEP_SECONDS:
        _last_sweep[project.id] = now
        leases_expire(project=project)


def assignments_lease_next(*, membership: Membership, task_type: str, count: int) -> list[Assignment]:
    """The person's unexpired leases of this task type first, then new ones up to `count`.

    New units: a gold unit at the project's gold rate per slot, else the non-gold units below
    the overlap that this person never had, fullest first, a prompt's units together. A study
    participant gets new units only while those they judged and hold stay within their link's
    quota, and only of their link's task type.
    """
    require_active(membership)
    project, annotator = membership.project, membership.user
    count = max(1, min(count, MAX_LEASE_BATCH))
    _sweep_expired_now_and_then(project)
    now = timezone.now()
    expires_at = now + project.lease_length
    with transaction.atomic():
        participant = (study_participant_for_work(project=project, annotator=annotator, lock=True)
                       if membership.study_participant else None)
        if participant is not None:
            study_require_task_type(participant=participant, task_type=task_type)
        held = list(Assignment.objects.filter(annotator=annotator, project=project, task_type=task_type,
                                              status=Assignment.Status.ACTIVE).order_by("id")[:MAX_LEASE_BATCH])
        if held:
            Assignment.objects.filter(id__in=[a.id for a in held]).update(expires_at=expires_at)
        need = count - len(held)
        if participant is not None and need > 0:
            # Never beyond the quota: what they judged and what they hold count, under their row lock.
            need = min(need, participant.link.quota - study_units_given(participant=participant))
        budget_left = adaptive_budget_left(project) if is_adaptive(project, task_type) else None
        if budget_left is not None:  # an adaptive project's budget: nothing more once it is spent
            need = min(need, budget_left)
        if need <= 0:
            return held
        gold_slots = sum(random.random() < project.gold_rate for _ in range(need))
        adaptive = project.collection == Project.Collection.ADAPTIVE  # the pick returns what its update reads
        picked = _pick_units(project, annotator, task_type, gold=True, limit=gold_slots,
                             with_rows=adaptive) if gold_slots else []
        picked += _pick_units(project, annotator, task_type, gold=False, limit=need - len(picked), with_rows=adaptive)
        if not picked:
            return held
        fresh = [Assignment(project=project, unit_id=unit_id, annotator=annotator, task_type=task_type,
                            left_image_id=random.choice((image_a, image_b)) if image_a else None, leased_at=now,
                            expires_at=expires_at)
                 for unit_id, image_a, image_b, *_ in picked]
        Assignment.objects.bulk_create(fresh)
        units_counters_move(project, [([row[0] for row in picked], 1, 0)],
                            rows=[(unit_id, *row) for unit_id, _, _, *row in picked] if adaptive else None)
    return held + fresh


def _pick_units(project, annotator, task_type, *, gold: bool, limit: int, with_rows: bool = False) -> list[tuple]:
    """Lock up to `limit` units this person may take and return (unit id, image_a id, image_b id)
    (the image ids are None but for pairs), followed `with_rows` by the unit's task type, gold
    flag, filled and evidence (what `adaptive_units_update` reads); caller holds a transaction.
    Units of hidden items are passed over (hiding an image hides its comparisons too)."""
    if limit <= 0:
        return []
    unit, assignment, comparison = WorkUnit._meta.db_table, Assignment._meta.db_table, "annotation_comparison"
    room = "" if gold else "AND u.filled < %(overlap)s"
    order = "u.id" if gold else "u.filled DESC, u.prompt_id, u.id"
    overlap = project.overlap
    if is_adaptive(project, task_type) and not gold:
        # Adaptive: open units (priority >= 0) below the maximum, highest priority first, a prompt's
        # units together among equals: workunit_adaptive_pick_idx, one index range scan.
        room, order, overlap = "AND u.priority >= 0 AND u.filled < %(overlap)s", "u.priority DESC, u.prompt_id, u.id", \
            project.max_votes
    lock = "FOR UPDATE OF u SKIP LOCKED" if connection.vendor == "postgresql" else ""
    # Pairs already join their comparison; only image units join the image, to see it is shown.
    image = "" if task_type == TaskType.PAIRWISE else 'LEFT JOIN "annotation_image" i ON i.id = u.image_id'
    shown = "c.hidden_at IS NULL" if task_type == TaskType.PAIRWISE else "i.hidden_at IS NULL"
    extra = ", u.task_type, u.is_gold, u.filled, u.evidence" if with_rows else ""
    sql = (f'SELECT u.id, c.image_a_id, c.image_b_id{extra} FROM "{unit}" u LEFT JOIN "{comparison}" c '
           f'ON c.id = u.comparison_id {image} WHERE u.project_id = %(project)s AND u.task_type = %(task_type)s '
           f'AND u.is_gold = %(gold)s {room} AND {shown} AND NOT EXISTS (SELECT 1 FROM "{assignment}" a '
           f'WHERE a.unit_id = u.id AND a.annotator_id = %(annotator)s) ORDER BY {order} LIMIT %(limit)s {lock}')
    with connection.cursor() as cursor:
        cursor.execute(sql, {"project": project.id, "task_type": task_type, "gold": gold, "overlap": overlap,
                             "annotator": annotator.id, "limit": limit})
        return cursor.fetchall()


def _units_locked(unit_ids) -> None:
    list(WorkUnit.objects.select_for_update().filter(id__in=unit_ids).order_by("id").values_list("id"))


def units_counters_move(project: Project, moves, *, votes=(), sign: int = 1, rows=None) -> None:
    """Move units' counters: `moves` [(unit ids, leased, done)], each once per occurrence of a unit
    in its list (caller holds their row locks, or in an adaptive project lets them be taken here).
    In an adaptive project one UPDATE per unit also carries its evidence (`votes` added, or taken
    back with sign -1) and priority, and the budget's count moves with them
    (`adaptive_units_update`, which may use the `rows` the caller's pick locked)."""
    if project.collection != Project.Collection.ADAPTIVE:
        for unit_ids, leased, done in moves:
            _units_add(unit_ids, leased=leased, done=done)
        return
    deltas: dict[int, tuple[int, int]] = {}
    for unit_ids, leased, done in moves:
        for unit_id, times in Counter(unit_ids).items():
            before = deltas.get(unit_id, (0, 0))
            deltas[unit_id] = (before[0] + leased * times, before[1] + done * times)
    adaptive_units_update(project=project, deltas=deltas, votes=votes, sign=sign, rows=rows)


def _units_add(unit_ids, *, leased: int = 0, done: int = 0) -> None:
    """Move the units' counters, once per occurrence of a unit in `unit_ids` (caller holds
    their row locks). Plain SQL: this runs twice per judgment, and the ORM's statement
    building cost more than the statement. Callers go through `units_counters_move`."""
    by_times: dict[int, list[int]] = {}
    for unit_id, times in Counter(unit_ids).items():
        by_times.setdefault(times, []).append(unit_id)
    with connection.cursor() as cursor:
        for times, ids in by_times.items():
            marks = ", ".join(["%s"] * len(ids))
            cursor.execute(f'UPDATE "{WorkUnit._meta.db_table}" SET leased = leased + %s, done = done + %s, '
                           f"filled = filled + %s WHERE id IN ({marks})",
                           [leased * times, done * times, (leased + done) * times, *ids])


GOLD_ANSWER_SHAPES = {
    TaskType.PAIRWISE: "{\"choice\": \"a\" | \"b\" | \"tie\"} (a and b as stored: image_a has the smaller id)",
    TaskType.ASPECT_SCORE: "{\"scores\": {aspect: whole number on the scale}}",
    TaskType.ARTIFACT_FLAG: "{\"has_artifacts\": true | false}",
}


def gold_units_mark(*, project: Project, items: list[dict]) -> list[WorkUnit]:
    """Make the named units gold (attention checks) with their expected answers, all or none.

    An item names `task_type`, its subject (`comparison` for pairwise, else `image`) and
    `answer`. Personal ratings have no right answer and cannot be gold."""
    from django.core.exceptions import ValidationError

    project_require_writable(project=project)
    marked = []
    with transaction.atomic():
        for n, item in enumerate(items, start=1):
            task_type = item.get("task_type")
            if task_type not in GOLD_ANSWER_SHAPES:
                raise ValidationError({"units": f"item {n}: task_type must be one of {', '.join(GOLD_ANSWER_SHAPES)}"})
            subject = "comparison" if task_type == TaskType.PAIRWISE else "image"
            unit = (WorkUnit.objects.select_for_update()
                    .filter(project=project, task_type=task_type, **{f"{subject}_id": item.get(subject)}).first())
            if unit is None:
                raise ValidationError({"units": f"item {n}: no {task_type} unit for {subject} {item.get(subject)!r} "
                                                f"in this project"})
            answer = item.get("answer")
            if not _gold_answer_ok(project, task_type, answer):
                raise ValidationError({"units": f"item {n}: answer must be {GOLD_ANSWER_SHAPES[task_type]}"})
            unit.is_gold, unit.gold_answer = True, answer
            unit.save(update_fields=["is_gold", "gold_answer"])
            marked.append(unit)
    return marked


def _gold_answer_ok(project, task_type, answer) -> bool:
    if not isinstance(answer, dict):
        return False
    if task_type == TaskType.PAIRWISE:
        return set(answer) == {"choice"} and answer["choice"] in ("a", "b", "tie")
    if task_type == TaskType.ARTIFACT_FLAG:
        return set(answer) == {"has_artifacts"} and isinstance(answer["has_artifacts"], bool)
    scores = answer.get("scores")
    return (set(answer) == {"scores"} and isinstance(scores, dict) and set(scores) == set(project.aspect_keys)
            and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= project.score_scale
                    for v in scores.values()))
