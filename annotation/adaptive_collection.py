"""Adaptive collection in the platform (issue 16; docs/adaptive.md): the pairwise units of a project
with `collection = adaptive` carry their votes' evidence and an order key (`WorkUnit.priority`).

- On lease, expiry, submit and undo (`adaptive_units_update`, same transaction, unit rows locked):
  a new vote adds its rater's row to the unit's evidence, and the unit's priority is recomputed
  from its evidence and `filled` (votes plus active leases). Constant work per unit.
- The refresh (`adaptive_refresh`, a Celery task on beat and every ~K judgments, never on the
  request path): refits rater reliabilities over the live human votes, recomputes every unit's
  evidence and priority from its votes (machine disagreement, cycles per prompt) in chunks under
  the units' row locks, and records an `AdaptiveSnapshot` for the researcher's curve.

The policy arithmetic is `curation.adaptive` (numpy); this module turns rows into its arrays.
Only pairwise units are adaptive; other task types keep the fixed overlap.
"""
from __future__ import annotations

import json
import random

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from annotation.models import AdaptiveBudget, AdaptiveRater, AdaptiveSnapshot, PreferenceJudgment, Project, Source, TaskType, WorkUnit
from curation import adaptive as policy

CHOICE_CODES = {"a": 0, "b": 1, "tie": 2}
REFRESH_CHUNK = 2000
CURVE_POINTS = 40  # rows of the progress page's accuracy-against-judgments table
EVIDENCE_LENGTH = 7  # a, b, tie log-likelihoods; machine votes a, b, tie; in a cycle (0 / 1)
BUDGET_LOCK_SPACE = 16  # first key of the advisory lock a budgeted project's leases take turns on


def is_adaptive(project: Project, task_type: str = TaskType.PAIRWISE) -> bool:
    return project.collection == Project.Collection.ADAPTIVE and task_type == TaskType.PAIRWISE


def adaptive_settings(project: Project) -> policy.AdaptiveSettings:
    return policy.AdaptiveSettings(min_votes=project.min_votes, max_votes=project.max_votes,
                                   confidence_target=project.confidence_target, budget=project.judgment_budget)


def _reliability(project: Project, annotator_ids=()) -> tuple[policy.RaterReliability, dict[int, int]]:
    """The last refresh's class prior, and the fitted matrices of `annotator_ids` only (one indexed
    read of their AdaptiveRater rows), with annotator id -> rater code; everyone else, and everyone
    before the first refresh, gets the prior's matrix."""
    stored = project.adaptive_reliability or {}
    if "log_class_prior" not in stored:
        return policy.RaterReliability.from_prior(0), {}
    ids = sorted(set(annotator_ids))
    rows = list(AdaptiveRater.objects.filter(project=project, annotator_id__in=ids)
                .values_list("annotator_id", "log_confusion")) if ids else []
    return (policy.RaterReliability(
        log_confusion=np.asarray([matrix for _, matrix in rows], dtype=np.float64).reshape(len(rows), 3, 3),
        log_class_prior=np.asarray(stored["log_class_prior"], dtype=np.float64),
        log_unknown_rater=np.asarray(stored["log_unknown_rater"], dtype=np.float64)),
        {annotator_id: code for code, (annotator_id, _) in enumerate(rows)})


def _priorities(project, reliability, filled, evidence, machine_counts=None, in_cycle=None) -> tuple[np.ndarray, np.ndarray]:
    """Priority and confidence per unit. Machine disagreement is recomputed here from the machine
    votes and the humans' current leading answer, so a vote that turns the humans against the
    machines raises the unit at once, as the policy replay does."""
    scored = policy.unit_confidence(evidence, reliability)
    machine = None if machine_counts is None else policy.machine_disagreement(
        machine_counts=machine_counts, human_label=scored.label, human_votes=filled)
    return policy.unit_priority(votes=filled, confidence=scored.confidence, settings=adaptive_settings(project),
                                machine_disagreement=machine, in_cycle=in_cycle), scored.confidence


def adaptive_units_update(*, project: Project, deltas: dict, votes=(), sign: int = 1, rows=None) -> None:
    """Move the counters of an adaptive project's units by `deltas` {unit id: (leased, done)}, add
    (sign 1) or take back (sign -1, undo) `votes` [(unit id, annotator id, choice a|b|tie)] to their
    evidence, and recompute their priority, all in one UPDATE per unit (one new row version, not
    two); gold and non-pairwise units only have their counters moved. The units are read and
    locked here (in id order) unless `rows` (id, task type, gold, filled, evidence) come from the
    caller's own `FOR UPDATE` read. The budget's count moves with them. Called through
    `annotation.assignment.units_counters_move`."""
    ids = sorted(deltas)
    if not ids:
        return
    if rows is None:
        lock = " ORDER BY id FOR UPDATE" if connection.vendor == "postgresql" else ""
        with connection.cursor() as cursor:
            cursor.execute(f'SELECT id, task_type, is_gold, filled, evidence FROM "{WorkUnit._meta.db_table}" '
                           f"WHERE id IN ({', '.join(['%s'] * len(ids))}){lock}", ids)
            rows = cursor.fetchall()
    adaptive_rows = [(unit_id, filled + sum(deltas.get(unit_id, (0, 0))), evidence)
                     for unit_id, task_type, gold, filled, evidence in rows
                     if task_type == TaskType.PAIRWISE and not gold]
    written, priorities = {}, {}
    if adaptive_rows:
        reliability, codes = _reliability(project, [annotator_id for _, annotator_id, _ in votes])
        position = {row[0]: n for n, row in enumerate(adaptive_rows)}
        stored = np.array([_evidence_of(row[2]) for row in adaptive_rows])
        evidence, machine_counts, in_cycle = stored[:, :3], stored[:, 3:6], stored[:, 6]
        for unit_id, annotator_id, choice in votes:
            if unit_id in position and choice in CHOICE_CODES:
                rater = codes.get(annotator_id, reliability.n_raters)  # unseen rater: the prior
                evidence[position[unit_id]] += sign * policy.vote_evidence(reliability, rater=rater,
                                                                           choice=CHOICE_CODES[choice])
        filled = np.array([row[1] for row in adaptive_rows])
        priority, _ = _priorities(project, reliability, filled, evidence, machine_counts, in_cycle)
        for n, (unit_id, *_) in enumerate(adaptive_rows):
            written[unit_id] = json.dumps([round(float(x), 6) for x in stored[n]])
            priorities[unit_id] = int(priority[n])
    _units_move(deltas, written, priorities)
    spent = sum(sum(deltas.get(unit_id, (0, 0))) for unit_id, *_ in adaptive_rows)
    if spent and project.judgment_budget is not None:
        AdaptiveBudget.objects.filter(project_id=project.id).update(spent=F("spent") + spent)


def _evidence_of(stored) -> list[float]:
    """A unit's stored evidence: log-likelihood a, b, tie, then the machine votes a, b, tie and the
    cycle flag as the last refresh counted them (kept so that the update on submit can work out
    those priority levels)."""
    if isinstance(stored, str):
        stored = json.loads(stored)
    stored = list(stored or [])
    return stored + [0.0] * (EVIDENCE_LENGTH - len(stored))


def _units_write(ids, evidence, priority) -> None:
    """The refresh's write: evidence rows and priorities of units whose counters it leaves alone."""
    _units_move({unit_id: (0, 0) for unit_id in ids},
                {unit_id: json.dumps([round(float(x), 6) for x in row]) for unit_id, row in zip(ids, evidence)},
                {unit_id: int(p) for unit_id, p in zip(ids, priority)})


def _units_move(deltas: dict, evidence: dict, priority: dict) -> None:
    """Counters moved by `deltas` {id: (leased, done)}, and `evidence` / `priority` set where given
    (other units keep theirs): one UPDATE by primary key per unit, sent together (psycopg
    pipelines executemany), which plans in microseconds where a join over unnest() took a
    fraction of a millisecond on every lease and submit."""
    if not deltas:
        return
    cast = "::jsonb" if connection.vendor == "postgresql" else ""
    sql = (f'UPDATE "{WorkUnit._meta.db_table}" SET leased = leased + %s, done = done + %s, filled = filled + %s, '
           f"evidence = COALESCE(%s{cast}, evidence), priority = COALESCE(%s, priority) WHERE id = %s")
    rows = [(deltas[i][0], deltas[i][1], sum(deltas[i]), evidence.get(i), priority.get(i), i) for i in sorted(deltas)]
    with connection.cursor() as cursor:
        if len(rows) == 1:  # the usual lease or answer: a plain statement skips the pipeline's set-up
            cursor.execute(sql, rows[0])
        else:
            cursor.executemany(sql, rows)


def adaptive_fresh_priority(project: Project) -> int:
    """The priority of a unit without votes or leases, under the project's current reliabilities."""
    reliability, _ = _reliability(project)
    return int(_priorities(project, reliability, np.zeros(1, dtype=np.int64), np.zeros((1, 3)))[0][0])


def adaptive_budget_left(project: Project) -> int | None:
    """Votes and leases the budget still allows on pairwise units (None without a budget); the
    caller holds a transaction. The project's leases take turns (a transaction-level advisory
    lock) so that concurrent leasers cannot overspend, and read the project's AdaptiveBudget row
    (one row by key; recounted from the units when it is missing): only projects with a budget
    pay this, on lease."""
    if project.judgment_budget is None or not is_adaptive(project):
        return None
    _budget_lock(project)
    spent = AdaptiveBudget.objects.filter(project_id=project.id).values_list("spent", flat=True).first()
    if spent is None:
        spent = adaptive_budget_recount(project, locked=True)
    return max(0, project.judgment_budget - spent)


def _budget_lock(project: Project) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [BUDGET_LOCK_SPACE, project.id])


def adaptive_budget_recount(project: Project, *, locked: bool = False) -> int:
    """Set the project's AdaptiveBudget from its units (votes plus leases), under the leases'
    advisory lock; what the refresh does, and a lease finding no row."""
    with transaction.atomic():
        if not locked:
            _budget_lock(project)
        spent = adaptive_spent(project, with_leases=True)
        AdaptiveBudget.objects.update_or_create(project_id=project.id, defaults={"spent": spent})
    return spent


def adaptive_spent(project: Project, *, with_leases: bool = False) -> int:
    column = "filled" if with_leases else "done"
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT COALESCE(SUM({column}), 0) FROM "{WorkUnit._meta.db_table}" '
                       f"WHERE project_id = %s AND task_type = %s AND NOT is_gold", [project.id, TaskType.PAIRWISE])
        return int(cursor.fetchone()[0])


def adaptive_refresh_now_and_then(project: Project, judged: int) -> None:
    """Ask for a refresh after the commit with chance judged / ADAPTIVE_REFRESH_EVERY_JUDGMENTS: about
    every K judgments, without a shared counter on the submit path."""
    every = settings.ADAPTIVE_REFRESH_EVERY_JUDGMENTS
    if judged and random.random() < judged / max(every, 1):
        from annotation.tasks import adaptive_refresh_task

        transaction.on_commit(lambda: adaptive_refresh_task.delay(project.id))


# --- the refresh ------------------------------------------------------------------------------

def _human_votes(project, comparison_ids=None):
    from curation.selectors import LIVE_JUDGMENT  # the one definition of a live judgment

    votes = PreferenceJudgment.objects.filter(LIVE_JUDGMENT, project=project, source=Source.HUMAN, aspect="overall",
                                              is_gold=False)
    if comparison_ids is not None:
        votes = votes.filter(comparison_id__in=comparison_ids)
    return votes.values_list("comparison_id", "annotator_id", "choice")


def adaptive_refresh(*, project_id: int) -> dict:
    """Refit the project's rater reliabilities and recompute every pairwise unit's evidence and
    priority from the votes; record a snapshot. Safe to run twice (it recomputes from the rows)."""
    project = Project.objects.get(id=project_id)
    if project.collection != Project.Collection.ADAPTIVE:
        return {"skipped": "not adaptive"}
    units = list(WorkUnit.objects.filter(project=project, task_type=TaskType.PAIRWISE, is_gold=False)
                 .order_by("id").values_list("id", "comparison_id", "prompt_id", "comparison__image_a_id",
                                             "comparison__image_b_id"))
    unit_code = {row[1]: n for n, row in enumerate(units)}
    votes = [v for v in _human_votes(project) if v[0] in unit_code]
    annotators = sorted({v[1] for v in votes})
    rater_code = {a: n for n, a in enumerate(annotators)}
    unit_arr = np.array([unit_code[v[0]] for v in votes], dtype=np.int64)
    rater_arr = np.array([rater_code[v[1]] for v in votes], dtype=np.int64)
    choice_arr = np.array([CHOICE_CODES[v[2]] for v in votes], dtype=np.int64)
    reliability = policy.rater_reliability(unit=unit_arr, rater=rater_arr, choice=choice_arr, n_units=len(units),
                                           n_raters=len(annotators))
    with transaction.atomic():
        AdaptiveRater.objects.filter(project=project).exclude(annotator_id__in=annotators).delete()
        AdaptiveRater.objects.bulk_create(
            [AdaptiveRater(project=project, annotator_id=a, log_confusion=reliability.log_confusion[n].round(6).tolist())
             for n, a in enumerate(annotators)],
            update_conflicts=True, unique_fields=["project", "annotator"], update_fields=["log_confusion"],
            batch_size=2000)
        project.adaptive_reliability = {"log_class_prior": reliability.log_class_prior.tolist(),
                                        "log_unknown_rater": reliability.log_unknown_rater.tolist()}
        project.save(update_fields=["adaptive_reliability"])

    evidence = policy.unit_evidence(unit=unit_arr, rater=rater_arr, choice=choice_arr, n_units=len(units),
                                    reliability=reliability)
    confidence = policy.unit_confidence(evidence, reliability)
    human_votes = np.bincount(unit_arr, minlength=len(units))
    machine_counts = np.zeros((len(units), 3))
    for comparison_id, choice in (PreferenceJudgment.objects.filter(
            project=project, source=Source.MACHINE, aspect="overall").values_list("comparison_id", "choice")):
        if comparison_id in unit_code:
            machine_counts[unit_code[comparison_id], CHOICE_CODES[choice]] += 1
    in_cycle = _in_cycle(units, confidence.label, human_votes)

    # Written in chunks, each under its units' row locks, with votes re-read there: a vote stored
    # since the fit above is counted, and `filled` is the live one.
    for start in range(0, len(units), REFRESH_CHUNK):
        chunk = units[start:start + REFRESH_CHUNK]
        with transaction.atomic():
            ids = [row[0] for row in chunk]
            locked = dict(WorkUnit.objects.select_for_update().filter(id__in=ids).order_by("id")
                          .values_list("id", "filled"))
            position = {row[1]: n for n, row in enumerate(chunk)}
            chunk_votes = list(_human_votes(project, comparison_ids=list(position)))
            rater = np.array([rater_code.get(v[1], reliability.n_raters) for v in chunk_votes], dtype=np.int64)
            chunk_evidence = policy.unit_evidence(
                unit=np.array([position[v[0]] for v in chunk_votes], dtype=np.int64), rater=rater,
                choice=np.array([CHOICE_CODES[v[2]] for v in chunk_votes], dtype=np.int64), n_units=len(chunk),
                reliability=reliability)
            filled = np.array([locked[i] for i in ids])
            chunk_machine = machine_counts[start:start + len(chunk)]
            chunk_cycle = in_cycle[start:start + len(chunk)]
            priority, _ = _priorities(project, reliability, filled, chunk_evidence, chunk_machine, chunk_cycle)
            _units_write(ids, np.column_stack([chunk_evidence, chunk_machine, chunk_cycle.astype(float)]), priority)

    if project.judgment_budget is not None:
        adaptive_budget_recount(project)  # what any path that moved counters around it left behind
    spent = int(human_votes.sum())
    settings_ = adaptive_settings(project)
    done = np.array(list(WorkUnit.objects.filter(id__in=[u[0] for u in units]).order_by("id")
                         .values_list("done", flat=True)), dtype=np.int64)
    left = policy.expected_votes_left(
        votes=done, confidence=confidence.confidence, settings=settings_,
        information_per_vote=policy.vote_information(reliability, np.bincount(rater_arr, minlength=len(annotators))))
    expected_left = int(round(float(left.sum())))
    if project.judgment_budget is not None:
        expected_left = min(expected_left, max(0, project.judgment_budget - spent))
    accuracy = policy.estimated_accuracy(confidence.confidence)
    # One point per spend on the researcher's curve: a refresh with no new votes moves the last one.
    point = {"at": timezone.now(), "expected_left": expected_left,
             "estimated_accuracy": 0.0 if np.isnan(accuracy) else accuracy}
    last = AdaptiveSnapshot.objects.filter(project=project).order_by("-at", "-id").first()
    if last is not None and last.judgments == spent:
        AdaptiveSnapshot.objects.filter(pk=last.pk).update(**point)
    else:
        AdaptiveSnapshot.objects.create(project=project, judgments=spent, **point)
    # Last: a refresh that dies on the way (its worker killed between chunks) leaves the project due.
    Project.objects.filter(pk=project.pk).update(adaptive_refreshed_judgments=len(votes))
    return {"units": len(units), "judgments": spent, "raters": len(annotators), "expected_left": expected_left}


def _in_cycle(units, label, human_votes) -> np.ndarray:
    """Per unit: whether its consensus edge (winner beats loser) lies on a cycle of its prompt's
    consensus graph: the loser reaches the winner through the other edges."""
    out = np.zeros(len(units), dtype=bool)
    edges_by_prompt: dict[int, list[tuple[int, int, int]]] = {}
    for n, (_, _, prompt_id, image_a, image_b) in enumerate(units):
        if human_votes[n] and label[n] != 2:
            winner, loser = (image_a, image_b) if label[n] == 0 else (image_b, image_a)
            edges_by_prompt.setdefault(prompt_id, []).append((n, winner, loser))
    for edges in edges_by_prompt.values():
        beats: dict[int, set[int]] = {}
        for _, winner, loser in edges:
            beats.setdefault(winner, set()).add(loser)
        for n, winner, loser in edges:
            seen, todo = {loser}, [loser]
            while todo:
                for nxt in beats.get(todo.pop(), ()):
                    if nxt == winner:
                        out[n] = True
                        todo = []
                        break
                    if nxt not in seen:
                        seen.add(nxt)
                        todo.append(nxt)
    return out


def adaptive_refresh_due() -> list[int]:
    """Beat: the adaptive projects to refresh: not archived, and never refreshed, or with a number
    of live human votes other than at their last completed refresh, or with settings changed since
    its snapshot (an idle campaign costs no refit; a refresh cut short is done again)."""
    due = []
    for project in Project.objects.filter(collection=Project.Collection.ADAPTIVE, is_archived=False).only(
            "id", "adaptive_reliability", "adaptive_refreshed_judgments", "updated_at"):
        last = AdaptiveSnapshot.objects.filter(project=project).order_by("-at", "-id").values_list("at", flat=True).first()
        if (project.adaptive_reliability is None or last is None or last < project.updated_at
                or _human_votes(project).count() != project.adaptive_refreshed_judgments):
            due.append(project.id)
    return due


def adaptive_progress(project: Project) -> dict | None:
    """The researcher's view of an adaptive project: judgments spent, expected judgments left (at the
    last refresh), the confidence distribution of the pairwise units and the accuracy curve."""
    if project.collection != Project.Collection.ADAPTIVE:
        return None
    reliability, _ = _reliability(project)
    rows = list(WorkUnit.objects.filter(project=project, task_type=TaskType.PAIRWISE, is_gold=False)
                .values_list("evidence", "priority"))
    evidence = np.array([_evidence_of(e)[:3] for e, _ in rows]).reshape(-1, 3)
    confidence = policy.unit_confidence(evidence, reliability).confidence if rows else np.zeros(0)
    edges = np.linspace(1 / 3, 1, 9)
    counts, _ = np.histogram(confidence, bins=edges)
    most = max(int(counts.max()) if counts.size else 0, 1)
    histogram = [{"low": round(float(lo), 2), "high": round(float(hi), 2), "units": int(c),
                  "width": round(100 * int(c) / most)} for lo, hi, c in zip(edges[:-1], edges[1:], counts)]
    snapshots = list(AdaptiveSnapshot.objects.filter(project=project).order_by("at", "id")
                     .values("at", "judgments", "estimated_accuracy", "expected_left"))
    curve = snapshots
    if len(snapshots) > CURVE_POINTS:  # evenly thinned, the first and the last kept
        keep = np.unique(np.linspace(0, len(snapshots) - 1, CURVE_POINTS).round().astype(int))
        curve = [snapshots[i] for i in keep]
    return {"judgments_spent": adaptive_spent(project), "budget": project.judgment_budget,
            "expected_left": snapshots[-1]["expected_left"] if snapshots else None,
            "units_closed": sum(1 for _, p in rows if p == policy.CLOSED), "units": len(rows),
            "estimated_accuracy": snapshots[-1]["estimated_accuracy"] if snapshots else None,
            "histogram": histogram, "curve": curve,
            "settings": adaptive_settings(project).as_json()}
