"""A simulated crowd replayed through the platform itself (issue 16, "done when"): the same world
(truth, raters, machine verdicts of `curation.adaptive_simulation`) judged once with fixed overlap
and once with adaptive collection, every judgment leased by `assignments_lease_next` and stored
by `submission_store`, the adaptive refresh run as the Celery task runs it, and accuracy read
from real filter runs (the default rules: crowd-kit Dawid-Skene) against the known truth.

`curation.adaptive_simulation.collect` replays the policy in numpy; this replays the platform:
the assignment SQL (priority order, the maximum, never twice to one person), the submit-time
evidence update, the refresh and the consensus a researcher would export. Used by
bench/adaptive_platform_bench.py and tests/annotation/test_adaptive_collection.py.

Each unit is a prompt of its own with two images (rows only: nothing opens the files), as in the
numpy replay. Simulated annotators arrive one judgment at a time in a seeded random order; each
leases one unit and answers it at once as their kind does (`simulation.rater_answer`, from the
side the assignment put on the left). The refresh runs every `refresh_every` judgments and when
nobody can be handed anything (it may reopen a unit), instead of on beat and by chance, so that
two arms see the same schedule.
"""
from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass, field

import numpy as np
from django.contrib.auth import get_user_model
from django.db import transaction

from annotation.adaptive_collection import adaptive_refresh
from annotation.assignment import assignments_lease_next, work_units_open
from annotation.judging import submission_store
from annotation.models import (
    Comparison,
    Image,
    MachineAnnotator,
    Membership,
    PreferenceJudgment,
    Project,
    Prompt,
    Source,
    TaskType,
    WorkUnit,
)
from annotation.services import membership_set, project_create
from curation.adaptive_simulation import CrowdWorld
from curation.models import FilterRun, UnitVerdict
from curation.services import filter_run_create, filter_run_execute
from curation.simulation import rater_answer
from curation.stats.judgments import CHOICE_A, CHOICE_B, CHOICE_TIE

CHOICE_NAMES = {CHOICE_A: "a", CHOICE_B: "b", CHOICE_TIE: "tie"}
FIXED = {"collection": Project.Collection.FIXED}


@dataclass
class ReplayProject:
    """A project holding one simulated world: unit code -> comparison, and its images' ids."""

    project: Project
    world: CrowdWorld
    comparison_ids: list[int]
    image_a: dict[int, int]  # unit id -> image a's id
    unit_code: dict[int, int]  # unit id -> code in the world
    members: list[Membership]


@dataclass
class PlatformRun:
    """One arm: accuracy of the platform's consensus at each checkpoint, `curve` rows
    [judgments, accuracy]; the human votes each unit got; refreshes run; seconds taken."""

    collection: str
    curve: list[tuple[int, float]] = field(default_factory=list)
    unit: list[int] = field(default_factory=list)  # per judgment, in order: the unit's code in the world
    rater: list[int] = field(default_factory=list)
    choice: list[int] = field(default_factory=list)
    votes_per_unit: np.ndarray | None = None
    refreshes: int = 0
    seconds: float = 0.0

    @property
    def judgments(self) -> int:
        return self.curve[-1][0] if self.curve else 0

    @property
    def accuracy(self) -> float:
        return self.curve[-1][1] if self.curve else 0.0


def replay_project(world: CrowdWorld, *, slug: str, creator, overlap: int = 5, **collection) -> ReplayProject:
    """A pairwise project for `world` (its units open), its simulated annotators and its machine
    judges' verdicts stored as machine judgments; `collection` are the project's collection
    settings (fixed overlap by default)."""
    project = project_create(creator=creator, slug=slug, name=f"Replay {slug}", task_types=[TaskType.PAIRWISE.value],
                             overlap=overlap, gold_rate=0.0, **(collection or FIXED))
    with transaction.atomic():
        prompts = Prompt.objects.bulk_create([
            Prompt(project=project, text=f"replay unit {n}", text_sha256=hashlib.sha256(f"{slug}:{n}".encode()).hexdigest())
            for n in range(world.n_units)])
        images = Image.objects.bulk_create([
            Image(project=project, prompt=prompt, sha256=hashlib.sha256(f"{prompt.id}:{side}".encode()).hexdigest(),
                  storage_key="images/replay.png", preview_key="previews/replay.webp", format="PNG", width=512,
                  height=512, size_bytes=1000)
            for prompt in prompts for side in "ab"])
        comparisons = Comparison.objects.bulk_create([
            Comparison(project=project, prompt=prompt, image_a=images[2 * n], image_b=images[2 * n + 1])
            for n, prompt in enumerate(prompts)])
        _machine_verdicts(project, world, comparisons)
    work_units_open(project=project)
    units = dict(WorkUnit.objects.filter(project=project, task_type=TaskType.PAIRWISE)
                 .values_list("comparison_id", "id"))
    comparison_ids = [c.id for c in comparisons]
    members = []
    User = get_user_model()
    for rater, kind in enumerate(world.kinds):
        user = User(username=f"{slug}-{kind}-{rater:02d}")
        user.set_unusable_password()
        user.save()
        membership_set(project=project, user=user, role=Membership.Role.ANNOTATOR)
        members.append(Membership.objects.select_related("project", "user").get(project=project, user=user))
    return ReplayProject(project=project, world=world, comparison_ids=comparison_ids,
                         image_a={units[c.id]: c.image_a_id for c in comparisons},
                         unit_code={units[c.id]: n for n, c in enumerate(comparisons)}, members=members)


def _machine_verdicts(project: Project, world: CrowdWorld, comparisons) -> None:
    """The world's machine verdicts (counts of a / b / tie per unit) as judgments of as many
    simulated judges, each judge answering every unit once."""
    judges = int(world.machine_counts[0].sum()) if world.n_units else 0
    annotators = [MachineAnnotator.objects.get_or_create(
        name=f"simulated judge {k}", defaults={"backend": "openai_chat", "model_ref": "simulated",
                                               "version": f"sim{k}"})[0] for k in range(judges)]
    rows = []
    for n, comparison in enumerate(comparisons):
        answers = [code for code in (CHOICE_A, CHOICE_B, CHOICE_TIE) for _ in range(int(world.machine_counts[n, code]))]
        for judge, code in zip(annotators, answers):
            rows.append(PreferenceJudgment(project=project, source=Source.MACHINE, machine_annotator=judge,
                                           machine_version=judge.version, comparison=comparison, aspect="overall",
                                           choice=CHOICE_NAMES[code], left_image_id=comparison.image_a_id))
    PreferenceJudgment.objects.bulk_create(rows, batch_size=5000)


def replay(target: ReplayProject, *, seed: int, budget: int, checkpoints=(), refresh_every: int = 500) -> PlatformRun:
    """Judge `target` until `budget` judgments are stored or nobody can be handed a unit; score
    the platform's consensus at each checkpoint (and at the end)."""
    world, project = target.world, target.project
    project.refresh_from_db()  # its collection may have been switched since (the settings page)
    adaptive = project.collection == Project.Collection.ADAPTIVE
    run = PlatformRun(collection=project.collection)
    started = time.perf_counter()
    arrivals = random.Random(seed)
    random.seed(seed)  # the platform's own draws (which image goes left) repeat too
    marks = sorted({int(c) for c in checkpoints if 0 < c <= budget})
    if adaptive:
        adaptive_refresh(project_id=project.id)  # what the switch to adaptive queues
        run.refreshes += 1
    spent = 0
    active = list(range(world.n_raters))
    while spent < budget:
        if not active:
            if not adaptive:
                break
            adaptive_refresh(project_id=project.id)  # a refresh may reopen a unit whose confidence fell
            run.refreshes += 1
            active = [r for r in range(world.n_raters) if _can_take(target, r)]
            if not active:
                break
        rater = arrivals.choice(active)
        membership = _fresh(target.members[rater])
        leased = assignments_lease_next(membership=membership, task_type=TaskType.PAIRWISE, count=1)
        if not leased:
            active.remove(rater)
            continue
        assignment = leased[0]
        code = target.unit_code[assignment.unit_id]
        left = CHOICE_A if assignment.left_image_id == target.image_a[assignment.unit_id] else CHOICE_B
        arrivals.choice((CHOICE_A, CHOICE_B))  # the numpy replay draws the side here: the two streams stay in step
        answer = rater_answer(world.composition, world.kinds[rater], skill=float(world.skill[rater]),
                              truth=int(world.truth[code]), left=left, hard=bool(world.hard[code]), rng=arrivals)
        outcome = submission_store(membership=membership, item={
            "idempotency_key": f"replay-{assignment.id}", "assignment": assignment.id,
            "choice": "tie" if answer == CHOICE_TIE else "left" if answer == left else "right"})
        if outcome.status != "stored":
            raise RuntimeError(f"a simulated judgment was refused: {outcome.message}")
        spent += 1
        run.unit.append(code)
        run.rater.append(rater)
        run.choice.append(answer)
        if adaptive and spent % refresh_every == 0:
            adaptive_refresh(project_id=project.id)
            run.refreshes += 1
            active = list(range(world.n_raters))
        if marks and spent == marks[0]:
            marks.pop(0)
            run.curve.append((spent, consensus_accuracy(target)))
    if not run.curve or run.curve[-1][0] != spent:
        run.curve.append((spent, consensus_accuracy(target)))
    run.votes_per_unit = votes_per_unit(target)
    run.seconds = time.perf_counter() - started
    return run


def _fresh(membership: Membership) -> Membership:
    """The membership with its project as a request loads them: the project's last refresh (its
    class prior) is on the row, so a stale copy would weigh every vote by the prior."""
    return Membership.objects.select_related("project", "user").get(pk=membership.pk)


def _can_take(target: ReplayProject, rater: int) -> bool:
    """Whether the assignment code would hand `rater` a unit now (the lease is handed back)."""
    membership = _fresh(target.members[rater])
    with transaction.atomic():
        leased = assignments_lease_next(membership=membership, task_type=TaskType.PAIRWISE, count=1)
        transaction.set_rollback(True)
    return bool(leased)


def consensus_accuracy(target: ReplayProject) -> float:
    """A filter run with the default rules, executed here as the worker would, scored against the
    world's truth over every unit (a unit without a decided consensus counts as wrong)."""
    project = target.project
    run = filter_run_create(project=project, name="replay", rules={}, enqueue=False)
    run = filter_run_execute(run_id=run.pk)
    if run.status != FilterRun.Status.SUCCEEDED:
        raise RuntimeError(f"filter run {run.pk} ended {run.status}: {run.message}")
    consensus = dict(UnitVerdict.objects.filter(run=run).values_list("comparison_id", "consensus"))
    truth = target.world.truth
    right = sum(consensus.get(comparison_id) == CHOICE_NAMES[int(truth[n])]
                for n, comparison_id in enumerate(target.comparison_ids))
    return right / len(target.comparison_ids)


def votes_per_unit(target: ReplayProject) -> np.ndarray:
    done = dict(WorkUnit.objects.filter(project=target.project, task_type=TaskType.PAIRWISE)
                .values_list("id", "done"))
    out = np.zeros(target.world.n_units, dtype=np.int64)
    for unit_id, code in target.unit_code.items():
        out[code] = done[unit_id]
    return out
