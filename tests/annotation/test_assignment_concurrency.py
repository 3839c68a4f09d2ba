"""50 annotators at once against a real PostgreSQL: the assignment rules hold under contention."""
import os
import random
import threading
import uuid
from collections import Counter

import pytest
from django.db import connection

from annotation.assignment import assignments_lease_next, work_units_open
from annotation.judging import submission_store
from annotation.models import Assignment, Membership, PreferenceJudgment, Submission, WorkUnit
from annotation.services import project_update
from tests.factories import MembershipFactory, UserFactory, prompts_with_all_pairs

pytestmark = pytest.mark.django_db(transaction=True)

ANNOTATORS = 50
OVERLAP = 3


@pytest.fixture
def postgres_only():
    if connection.vendor != "postgresql":
        if os.environ.get("CI"):
            pytest.fail("CI must run this test on PostgreSQL (set DATABASE_URL)")
        pytest.skip("the concurrency guarantees are PostgreSQL's (SKIP LOCKED); set DATABASE_URL to run")


def test_fifty_concurrent_annotators_never_break_the_assignment_rules(postgres_only, project):
    prompts_with_all_pairs(project, prompts=30, images_per_prompt=4)
    project_update(project=project, overlap=OVERLAP, gold_rate=0.05)
    work_units_open(project=project)
    WorkUnit.objects.filter(id__in=WorkUnit.objects.order_by("id").values("id")[:5]).update(is_gold=True)
    people = [MembershipFactory(project=project, user=UserFactory(username=f"crowd{i}")).user for i in range(ANNOTATORS)]
    errors, retries = [], Counter()

    def work(user, seed):
        rng = random.Random(seed)
        membership = Membership.objects.select_related("project", "user").get(user=user, project=project)
        try:
            while True:
                leased = assignments_lease_next(membership=membership, task_type="pairwise",
                                                count=rng.randint(1, 3))
                if not leased:
                    return
                for assignment in leased:
                    skip = rng.random() < 0.05
                    payload = {"idempotency_key": uuid.uuid4().hex, "assignment": assignment.id, "latency_ms": 900,
                               **({"skip": True, "reason": "unsure"} if skip else {"choice": rng.choice(["left", "right", "tie"])})}
                    outcome = submission_store(membership=membership, item=payload)
                    if rng.random() < 0.1:  # a network retry of the same key
                        retry = submission_store(membership=membership, item=payload)
                        retries[retry.status] += 1
                    if outcome.status != "stored":
                        errors.append(f"{user.username}: {outcome.message}")
        except Exception as exc:  # surfaced below: a thread must not die silently
            errors.append(f"{user.username}: {exc!r}")
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(user, i)) for i, user in enumerate(people)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)

    assert not errors, errors[:5]
    assert set(retries) <= {"duplicate"}
    units = list(WorkUnit.objects.filter(project=project))
    completed = Counter(Assignment.objects.filter(status="completed").values_list("unit_id", flat=True))
    pairs = Counter(Assignment.objects.values_list("unit_id", "annotator_id"))
    # none twice to one person
    assert max(pairs.values()) == 1
    # every lease accounted for: none left active, counters match the assignments
    assert not Assignment.objects.filter(status="active").exists()
    for unit in units:
        assert (unit.done, unit.leased, unit.filled) == (completed[unit.id], 0, completed[unit.id]), unit.id
    # no unit beyond its overlap, and none lost: every ordinary unit reached it
    ordinary = [u for u in units if not u.is_gold]
    assert all(u.done == OVERLAP for u in ordinary)
    # gold units were mixed in (at 5% a slot, about 20 of ~400 leases) and are not bound by the overlap
    gold_done = [u.done for u in units if u.is_gold]
    assert sum(gold_done) >= 5
    # one judgment row per completed assignment, one submission per key
    assert PreferenceJudgment.objects.count() == sum(completed.values())
    assert Submission.objects.count() == Assignment.objects.exclude(status="active").count()
