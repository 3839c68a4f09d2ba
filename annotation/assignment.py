"""Handing out work: opening units for a project's task types, leasing the next units to a
person, and returning expired leases to the pool.

Concurrency: picking locks the chosen unit rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so
concurrent annotators pass over each other's rows instead of queueing) and every counter
change happens under that row lock, in the same transaction as the assignment rows.
"""
import random
from collections import Counter
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework.exceptions import PermissionDenied

from annotation.models import Assignment, Membership, Project, TaskType, WorkUnit

MAX_LEASE_BATCH = 10


def work_units_open(*, project: Project) -> int:
    """Create the missing units of every task type switched on in `project` (idempotent, set-based)."""
    created = 0
    with transaction.atomic(), connection.cursor() as cursor:
        unit = WorkUnit._meta.db_table
        for task_type in project.task_types:
            if task_type == TaskType.PAIRWISE:
                source, subject, subject_id = "annotation_comparison", "comparison_id", "s.id"
            else:
                source, subject, subject_id = "annotation_image", "image_id", "s.id"
            cursor.execute(
                f'INSERT INTO "{unit}" (project_id, task_type, prompt_id, {subject}, is_gold, done, leased, filled) '
                f'SELECT s.project_id, %s, s.prompt_id, {subject_id}, %s, 0, 0, 0 FROM "{source}" s '
                f'WHERE s.project_id = %s AND NOT EXISTS '
                f'(SELECT 1 FROM "{unit}" u WHERE u.{subject} = s.id AND u.task_type = %s) ORDER BY s.id',
                [task_type, False, project.id, task_type],
            )
            created += cursor.rowcount
    return created


def membership_for_work(*, project: Project, user) -> Membership:
    membership = Membership.objects.filter(project=project, user=user).first()
    if membership is None:
        raise PermissionDenied("You are not a member of this project.")
    if membership.status == Membership.Status.SUSPENDED:
        raise PermissionDenied("Your work on this project is suspended"
                               + (f": {membership.status_reason}" if membership.status_reason else "."))
    return membership


def leases_expire(*, project: Project, now=None) -> int:
    """Return every lease past its deadline to the pool; returns how many."""
    now = now or timezone.now()
    with transaction.atomic():
        expired = list(Assignment.objects.select_for_update(skip_locked=True)
                       .filter(project=project, status=Assignment.Status.ACTIVE, expires_at__lt=now)
                       .values_list("id", "unit_id"))
        if not expired:
            return 0
        Assignment.objects.filter(id__in=[a for a, _ in expired]).update(status=Assignment.Status.EXPIRED,
                                                                         finished_at=now)
        _units_locked([u for _, u in expired])
        _units_add([u for _, u in expired], leased=-1)
    return len(expired)


def assignments_lease_next(*, project: Project, annotator, task_type: str, count: int) -> list[Assignment]:
    """The person's unexpired leases of this task type first, then new ones up to `count`.

    New units: a gold unit at the project's gold rate per slot, else the non-gold units below
    the overlap that this person never had, fullest first, a prompt's units together.
    """
    membership_for_work(project=project, user=annotator)
    count = max(1, min(count, MAX_LEASE_BATCH))
    leases_expire(project=project)
    now = timezone.now()
    expires_at = now + timedelta(minutes=settings.WORK_LEASE_MINUTES)
    with transaction.atomic():
        held = list(Assignment.objects.filter(annotator=annotator, project=project, task_type=task_type,
                                              status=Assignment.Status.ACTIVE).order_by("id")[:MAX_LEASE_BATCH])
        if held:
            Assignment.objects.filter(id__in=[a.id for a in held]).update(expires_at=expires_at)
        need = count - len(held)
        if need <= 0:
            return held
        gold_slots = sum(random.random() < project.gold_rate for _ in range(need))
        unit_ids = _pick_units(project, annotator, task_type, gold=True, limit=gold_slots) if gold_slots else []
        unit_ids += _pick_units(project, annotator, task_type, gold=False, limit=need - len(unit_ids))
        if not unit_ids:
            return held
        units = {u.id: u for u in WorkUnit.objects.filter(id__in=unit_ids).select_related("comparison")}
        fresh = []
        for unit_id in unit_ids:
            unit = units[unit_id]
            left = None
            if unit.comparison_id:
                left = random.choice((unit.comparison.image_a_id, unit.comparison.image_b_id))
            fresh.append(Assignment(project=project, unit_id=unit_id, annotator=annotator, task_type=task_type,
                                    left_image_id=left, leased_at=now, expires_at=expires_at))
        Assignment.objects.bulk_create(fresh)
        _units_add(unit_ids, leased=1)
    return held + fresh


def _pick_units(project, annotator, task_type, *, gold: bool, limit: int) -> list[int]:
    """Lock and return up to `limit` unit ids this person may take; caller holds a transaction."""
    if limit <= 0:
        return []
    unit, assignment = WorkUnit._meta.db_table, Assignment._meta.db_table
    room = "" if gold else "AND u.filled < %(overlap)s"
    order = "u.id" if gold else "u.filled DESC, u.prompt_id, u.id"
    lock = "FOR UPDATE OF u SKIP LOCKED" if connection.vendor == "postgresql" else ""
    sql = (f'SELECT u.id FROM "{unit}" u WHERE u.project_id = %(project)s AND u.task_type = %(task_type)s '
           f'AND u.is_gold = %(gold)s {room} AND NOT EXISTS (SELECT 1 FROM "{assignment}" a '
           f'WHERE a.unit_id = u.id AND a.annotator_id = %(annotator)s) ORDER BY {order} LIMIT %(limit)s {lock}')
    with connection.cursor() as cursor:
        cursor.execute(sql, {"project": project.id, "task_type": task_type, "gold": gold, "overlap": project.overlap,
                             "annotator": annotator.id, "limit": limit})
        return [row[0] for row in cursor.fetchall()]


def _units_locked(unit_ids) -> None:
    list(WorkUnit.objects.select_for_update().filter(id__in=unit_ids).order_by("id").values_list("id"))


def _units_add(unit_ids, *, leased: int = 0, done: int = 0) -> None:
    """Move the units' counters, once per occurrence of a unit in `unit_ids` (caller holds
    their row locks)."""
    by_times: dict[int, list[int]] = {}
    for unit_id, times in Counter(unit_ids).items():
        by_times.setdefault(times, []).append(unit_id)
    for times, ids in by_times.items():
        WorkUnit.objects.filter(id__in=ids).update(leased=F("leased") + leased * times, done=F("done") + done * times,
                                                   filled=F("filled") + (leased + done) * times)
