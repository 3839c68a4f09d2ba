"""The adaptive refresh: it runs on a real Celery worker, refits reliabilities, rewrites every
pairwise unit's evidence and priority from the votes, and records a snapshot."""
import random
import uuid

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotation.adaptive_collection import _in_cycle, _reliability, adaptive_refresh
from annotation.assignment import assignments_lease_next, work_units_open
from annotation.judging import submission_store
from annotation.models import AdaptiveRater, AdaptiveSnapshot, Membership, PreferenceJudgment, WorkUnit
from annotation.services import project_update
from annotation.tasks import adaptive_refresh_task
from curation.adaptive import CLOSED, unit_confidence
from tests.conftest import wait_for
from tests.factories import MembershipFactory, UserFactory, prompts_with_all_pairs


def votes_from(project, people: int, rounds: int, seed=3):
    rng = random.Random(seed)
    for i in range(people):
        user = MembershipFactory(project=project, user=UserFactory(username=f"r{i}")).user
        membership = Membership.objects.select_related("project", "user").get(user=user, project=project)
        for _ in range(rounds):
            for assignment in assignments_lease_next(membership=membership, task_type="pairwise", count=3):
                choice = "left" if i == 0 else rng.choice(["left", "left", "right"])  # r0 always left
                assert submission_store(membership=membership, item={
                    "idempotency_key": uuid.uuid4().hex, "assignment": assignment.id,
                    "choice": choice}).status == "stored"


def adaptive(project):
    prompts_with_all_pairs(project, prompts=4, images_per_prompt=4)
    project_update(project=project, task_types=["pairwise"], gold_rate=0.0)
    work_units_open(project=project)
    return project_update(project=project, collection="adaptive", min_votes=2, max_votes=6, confidence_target=0.9)


@pytest.mark.django_db(transaction=True)
def test_the_refresh_runs_on_a_worker_and_updates_the_priorities(celery_worker_process, project, settings):
    settings.ADAPTIVE_REFRESH_EVERY_JUDGMENTS = 10**9
    project = adaptive(project)  # switching to adaptive queues a first refresh (no votes yet)
    wait_for(lambda: AdaptiveSnapshot.objects.filter(project=project, judgments=0).exists(), timeout=60,
             what="the refresh queued by the switch")
    votes_from(project, people=5, rounds=4)
    before = dict(WorkUnit.objects.filter(project=project).values_list("id", "priority"))
    live = PreferenceJudgment.objects.filter(project=project, source="human", retracted_at__isnull=True).count()

    adaptive_refresh_task.delay(project.id)
    snapshot = wait_for(lambda: AdaptiveSnapshot.objects.filter(project=project, judgments__gt=0).first(), timeout=60,
                        what="the refresh's snapshot")
    project.refresh_from_db()
    assert snapshot.judgments == live
    assert project.adaptive_refreshed_judgments == live
    assert AdaptiveRater.objects.filter(project=project).count() == 5
    units = list(WorkUnit.objects.filter(project=project).order_by("id"))
    reliability, _ = _reliability(project)
    confidence = unit_confidence(np.array([u.evidence[:3] for u in units]), reliability).confidence
    assert snapshot.estimated_accuracy == pytest.approx(confidence.mean(), abs=1e-4)
    for unit, sure in zip(units, confidence):
        closed = unit.filled >= 6 or (unit.filled >= 2 and sure >= 0.9)
        assert (unit.priority == CLOSED) == closed, unit.id
    assert any(before[u.id] != u.priority for u in units)  # the refit moved some unit's order


@pytest.mark.django_db
def test_the_refresh_recomputes_what_the_submit_path_added(project, django_capture_on_commit_callbacks, settings):
    settings.ADAPTIVE_REFRESH_EVERY_JUDGMENTS = 10**9
    with django_capture_on_commit_callbacks(execute=False):
        project = adaptive(project)
        votes_from(project, people=3, rounds=2)
    adaptive_refresh(project_id=project.id)
    first = dict(WorkUnit.objects.filter(project=project).values_list("id", "priority"))
    adaptive_refresh(project_id=project.id)  # safe to run twice: the same result
    assert dict(WorkUnit.objects.filter(project=project).values_list("id", "priority")) == first
    assert AdaptiveSnapshot.objects.filter(project=project).count() == 1  # no new votes: the point moved, none added


@pytest.mark.django_db
def test_beat_refreshes_only_the_adaptive_projects_whose_votes_changed(project, django_capture_on_commit_callbacks,
                                                                       settings):
    from annotation.adaptive_collection import adaptive_refresh_due

    settings.ADAPTIVE_REFRESH_EVERY_JUDGMENTS = 10**9
    with django_capture_on_commit_callbacks(execute=False):
        project = adaptive(project)
    assert adaptive_refresh_due() == [project.id]  # never refreshed
    adaptive_refresh(project_id=project.id)
    assert adaptive_refresh_due() == []  # idle: no refit every few minutes for nothing
    with django_capture_on_commit_callbacks(execute=False):
        votes_from(project, people=1, rounds=1)
    assert adaptive_refresh_due() == [project.id]
    adaptive_refresh(project_id=project.id)
    assert adaptive_refresh_due() == []
    with django_capture_on_commit_callbacks(execute=False):
        project_update(project=project, confidence_target=0.8)
    assert adaptive_refresh_due() == [project.id]  # settings changed since the last refresh
    adaptive_refresh(project_id=project.id)
    assert adaptive_refresh_due() == []


@pytest.mark.django_db
def test_a_refresh_cut_short_between_chunks_leaves_the_project_due(project, django_capture_on_commit_callbacks,
                                                                   settings, monkeypatch):
    import annotation.adaptive_collection as collection
    from annotation.adaptive_collection import adaptive_refresh_due

    settings.ADAPTIVE_REFRESH_EVERY_JUDGMENTS = 10**9
    with django_capture_on_commit_callbacks(execute=False):
        project = adaptive(project)
    adaptive_refresh(project_id=project.id)
    with django_capture_on_commit_callbacks(execute=False):
        votes_from(project, people=3, rounds=2)
    monkeypatch.setattr(collection, "REFRESH_CHUNK", 5)
    written = []
    real_write = collection._units_write

    def dies_after_the_first_chunk(ids, evidence, priority):
        if written:
            raise SystemExit("worker killed")
        written.append(ids)
        real_write(ids, evidence, priority)

    monkeypatch.setattr(collection, "_units_write", dies_after_the_first_chunk)
    with pytest.raises(SystemExit):
        adaptive_refresh(project_id=project.id)
    assert len(written) == 1
    assert adaptive_refresh_due() == [project.id]  # the next beat does it again
    monkeypatch.setattr(collection, "_units_write", real_write)
    adaptive_refresh(project_id=project.id)
    assert adaptive_refresh_due() == []


@pytest.mark.django_db
def test_the_progress_curve_keeps_at_most_40_points_with_the_first_and_the_last(project,
                                                                              django_capture_on_commit_callbacks):
    from annotation.adaptive_collection import adaptive_progress

    with django_capture_on_commit_callbacks(execute=False):
        project = adaptive(project)
    AdaptiveSnapshot.objects.bulk_create([AdaptiveSnapshot(project=project, judgments=10 * n, estimated_accuracy=0.5,
                                                           expected_left=0) for n in range(500)])
    curve = adaptive_progress(project)["curve"]
    assert len(curve) == 40
    assert (curve[0]["judgments"], curve[-1]["judgments"]) == (0, 4990)
    assert [p["judgments"] for p in curve] == sorted(p["judgments"] for p in curve)


@pytest.mark.django_db
def test_a_submit_weighs_the_vote_by_its_raters_fitted_matrix_reading_only_that_raters_row(
        project, django_capture_on_commit_callbacks, settings):
    """The cost of weighing a vote must not grow with the crowd: the submit reads the voter's
    AdaptiveRater row, not every rater's matrix."""
    settings.ADAPTIVE_REFRESH_EVERY_JUDGMENTS = 10**9
    with django_capture_on_commit_callbacks(execute=False):
        project = adaptive(project)
        votes_from(project, people=5, rounds=1)
    adaptive_refresh(project_id=project.id)
    voter = Membership.objects.select_related("project", "user").get(project=project, user__username="r0")
    fitted = np.array(AdaptiveRater.objects.get(project=project, annotator=voter.user).log_confusion)
    assignment = assignments_lease_next(membership=voter, task_type="pairwise", count=1)[0]
    unit = WorkUnit.objects.select_related("comparison").get(id=assignment.unit_id)
    before = np.array(unit.evidence[:3])
    with django_capture_on_commit_callbacks(execute=False), CaptureQueriesContext(connection) as queries:
        assert submission_store(membership=voter, item={"idempotency_key": uuid.uuid4().hex,
                                                        "assignment": assignment.id, "choice": "left"}).status == "stored"
    unit.refresh_from_db()
    said = 0 if assignment.left_image_id == unit.comparison.image_a_id else 1  # "left" as a or b
    assert np.allclose(np.array(unit.evidence[:3]) - before, fitted[:, said], atol=1e-5)
    rater_reads = [q["sql"] for q in queries.captured_queries if "annotation_adaptiverater" in q["sql"]]
    assert len(rater_reads) == 1 and f'"annotator_id" IN ({voter.user_id})' in rater_reads[0], rater_reads


def test_a_consensus_cycle_marks_its_units_and_only_them():
    # prompt 1: 10 beats 11, 11 beats 12, 12 beats 10 (a cycle); prompt 2: 20 > 21 > 22 and 20 > 22
    units = [(1, 0, 1, 10, 11), (2, 0, 1, 11, 12), (3, 0, 1, 10, 12), (4, 0, 2, 20, 21), (5, 0, 2, 21, 22),
             (6, 0, 2, 20, 22)]
    label = np.array([0, 0, 1, 0, 0, 0])  # unit 3: b (12) wins over 10
    assert _in_cycle(units, label, np.ones(6)).tolist() == [True, True, True, False, False, False]


@pytest.mark.django_db
def test_machine_judges_who_split_raise_a_unit_and_a_vote_keeps_that(project, django_capture_on_commit_callbacks,
                                                                     settings):
    from annotation.models import MachineAnnotator

    settings.ADAPTIVE_REFRESH_EVERY_JUDGMENTS = 10**9
    with django_capture_on_commit_callbacks(execute=False):
        project = adaptive(project)
    split, calm = WorkUnit.objects.filter(project=project).select_related("comparison").order_by("id")[:2]
    for n in range(4):  # two machine judges say a, two say b on `split`; all four say a on `calm`
        judge = MachineAnnotator.objects.create(name=f"judge{n}", backend="fake")
        for unit, choice in ((split, "ab"[n % 2]), (calm, "a")):
            PreferenceJudgment.objects.create(project=project, source="machine", machine_annotator=judge,
                                              comparison=unit.comparison, choice=choice,
                                              left_image_id=unit.comparison.image_a_id)
    adaptive_refresh(project_id=project.id)
    split.refresh_from_db()
    calm.refresh_from_db()
    assert split.priority > calm.priority  # same votes (none) and confidence: the split decides
    assert split.evidence[3:6] == [2, 2, 0] and calm.evidence[3:6] == [4, 0, 0]  # machine votes a, b, tie
    with django_capture_on_commit_callbacks(execute=False):
        votes_from(project, people=1, rounds=1)  # r0 votes on the top units, `split` first
    split.refresh_from_db()
    assert split.done == 1 and split.evidence[3:6] == [2, 2, 0]  # the submit-time update kept the machine votes



@pytest.mark.django_db
def test_a_vote_against_the_machines_raises_its_unit_at_once_without_a_refresh(
        project, django_capture_on_commit_callbacks, settings):
    from annotation.models import MachineAnnotator

    settings.ADAPTIVE_REFRESH_EVERY_JUDGMENTS = 10**9
    with django_capture_on_commit_callbacks(execute=False):
        project = adaptive(project)
    agree, against = WorkUnit.objects.filter(project=project).select_related("comparison").order_by("id")[:2]
    for n in range(3):  # three machine judges say a on both units
        judge = MachineAnnotator.objects.create(name=f"judge{n}", backend="fake")
        for unit in (agree, against):
            PreferenceJudgment.objects.create(project=project, source="machine", machine_annotator=judge,
                                              comparison=unit.comparison, choice="a",
                                              left_image_id=unit.comparison.image_a_id)
    adaptive_refresh(project_id=project.id)
    voter = Membership.objects.select_related("project", "user").get(
        project=project, user=MembershipFactory(project=project, user=UserFactory(username="v")).user)
    leased = {a.unit_id: a for a in assignments_lease_next(membership=voter, task_type="pairwise", count=16)}
    for unit, says in ((agree, "a"), (against, "b")):
        assignment = leased[unit.id]
        shown_left = "a" if assignment.left_image_id == unit.comparison.image_a_id else "b"
        with django_capture_on_commit_callbacks(execute=False):
            assert submission_store(membership=voter, item={
                "idempotency_key": uuid.uuid4().hex, "assignment": assignment.id,
                "choice": "left" if says == shown_left else "right"}).status == "stored"
    agree.refresh_from_db()
    against.refresh_from_db()
    # one vote each, equally sure (a and b are symmetric): only the humans' dissent from the machines differs
    assert against.priority > agree.priority
