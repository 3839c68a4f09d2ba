"""Leasing units, storing submissions and undo, through the workspace API."""
import json
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from annotation.assignment import leases_expire, work_units_open
from annotation.models import (
    AnnotatorProfile, ArtifactFlag, AspectScore, Assignment, Membership, PersonalRating, PreferenceJudgment,
    Submission, TaskType, WorkUnit,
)
from annotation.services import project_update
from tests.factories import MembershipFactory, UserFactory, prompts_with_all_pairs

pytestmark = pytest.mark.django_db
ALL_TYPES = [t.value for t in TaskType]


@pytest.fixture
def work_project(project):
    """`cats` with every task type on, overlap 2, no gold, 3 prompts x 3 images (9 images, 9 pairs)."""
    prompts_with_all_pairs(project, prompts=3, images_per_prompt=3)
    project_update(project=project, task_types=ALL_TYPES, overlap=2, gold_rate=0.0)
    return project


def annotator_client(project, name="anna"):
    user = MembershipFactory(project=project, user=UserFactory(username=name), role="annotator").user
    client = APIClient()
    client.force_login(user)
    client.user = user
    return client


def lease(client, task_type="pairwise", count=3):
    response = client.post("/api/v1/projects/cats/work/next/", {"task_type": task_type, "count": count}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["units"]


def submit(client, *items):
    return client.post("/api/v1/projects/cats/work/submit/", {"submissions": list(items)}, format="json")


def item(unit, **values):
    return {"idempotency_key": str(uuid.uuid4()), "assignment": unit["assignment"], "latency_ms": 1234, **values}


# --- units and leases ---------------------------------------------------------------------

def test_units_open_once_per_task_type_and_subject(work_project):
    counts = {t: WorkUnit.objects.filter(task_type=t).count() for t in ALL_TYPES}

    assert counts == {"pairwise": 9, "aspect_score": 9, "personal_rating": 9, "artifact_flag": 9}
    assert work_units_open(project=work_project) == 0


def test_lease_returns_pairs_with_randomised_recorded_sides(work_project):
    client = annotator_client(work_project)

    units = lease(client, count=9)

    assert len(units) == 9
    lefts = {a.id: a.left_image_id for a in Assignment.objects.all()}
    assert all(u["images"][0]["id"] == lefts[u["assignment"]] for u in units)
    canonical_first = sum(lefts[u["assignment"]] < u["images"][1]["id"] for u in units)
    assert 0 < canonical_first < 9 or len(units) < 9  # both sides occur (p of failure 2/512)


def test_lease_keeps_a_prompts_units_together_and_returns_held_units_first(work_project):
    client = annotator_client(work_project)

    first = lease(client, count=3)
    again = lease(client, count=3)

    assert len({u["prompt"]["id"] for u in first}) == 1
    assert [u["assignment"] for u in again] == [u["assignment"] for u in first]


def test_overlap_bounds_how_many_people_get_a_unit(work_project):
    clients = [annotator_client(work_project, f"a{i}") for i in range(3)]

    got = [lease(c, count=10) for c in clients]

    assert [len(g) for g in got] == [9, 9, 0]
    assert all(u.filled == 2 for u in WorkUnit.objects.filter(task_type="pairwise"))


def test_fullest_units_are_handed_out_first(work_project):
    first = annotator_client(work_project, "first")
    taken = {u["unit"] for u in lease(first, count=2)}

    second = {u["unit"] for u in lease(annotator_client(work_project, "second"), count=2)}

    assert second == taken


def test_expired_lease_returns_the_unit_to_the_pool(work_project, settings):
    settings.WORK_EXPIRY_SWEEP_SECONDS = 0
    a, b, c = (annotator_client(work_project, n) for n in "abc")
    lease(a, count=9)
    lease(b, count=9)
    Assignment.objects.filter(annotator=a.user).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert len(lease(c, count=10)) == 9
    assert Assignment.objects.filter(annotator=a.user, status="expired").count() == 9
    assert all(u.leased == 2 and u.filled == 2 for u in WorkUnit.objects.filter(task_type="pairwise"))


def test_gold_units_are_mixed_in_at_the_projects_rate(work_project):
    gold_ids = list(WorkUnit.objects.filter(task_type="pairwise").values_list("id", flat=True)[:2])
    WorkUnit.objects.filter(id__in=gold_ids).update(is_gold=True, gold_answer={"choice": "a"})
    project_update(project=work_project, gold_rate=1.0)

    units = lease(annotator_client(work_project), count=3)

    assert [u["unit"] for u in units[:2]] == gold_ids
    assert set(units[0]) == set(units[2])  # a gold unit looks like any other


# --- submissions ----------------------------------------------------------------------------

def test_pairwise_submission_stores_canonical_choice_left_image_and_latency(work_project):
    client = annotator_client(work_project)
    unit = lease(client, count=1)[0]
    left, right = unit["images"][0]["id"], unit["images"][1]["id"]

    response = submit(client, item(unit, choice="left", aspects={"aesthetic": "right", "fidelity": "tie"}))

    assert response.json()["results"][0]["status"] == "stored"
    rows = {j.aspect: j for j in PreferenceJudgment.objects.all()}
    assert set(rows) == {"overall", "aesthetic", "fidelity"}
    overall = rows["overall"]
    assert overall.left_image_id == left and overall.latency_ms == 1234 and overall.annotator == client.user
    assert overall.choice == ("a" if left < right else "b")
    assert rows["aesthetic"].choice == ("a" if right < left else "b") and rows["fidelity"].choice == "tie"
    assert Assignment.objects.get().status == "completed"
    assert WorkUnit.objects.get(id=unit["unit"]).done == 1


def test_a_retried_submission_is_stored_once(work_project):
    client = annotator_client(work_project)
    unit = lease(client, count=1)[0]
    payload = item(unit, choice="tie")

    first, retry = submit(client, payload), submit(client, payload)

    assert first.json()["results"][0]["status"] == "stored"
    assert retry.status_code == 200 and retry.json()["results"][0]["status"] == "duplicate"
    assert PreferenceJudgment.objects.count() == 1 and Submission.objects.count() == 1


def test_a_key_reused_with_a_different_answer_is_a_conflict_and_the_first_answer_stands(work_project):
    client = annotator_client(work_project)
    unit = lease(client, count=1)[0]
    first = item(unit, choice="tie")

    submit(client, first)
    response = submit(client, {**first, "choice": "left"})

    assert response.status_code == 409
    body = response.json()
    assert body["message"].startswith("Submission conflict: this idempotency_key was already used for a different answer")
    assert body["extra"]["code"] == "conflict"
    assert [(r["idempotency_key"], r["status"]) for r in body["extra"]["results"]] == [(first["idempotency_key"], "conflict")]
    assert list(PreferenceJudgment.objects.values_list("choice", flat=True)) == ["tie"]
    assert Submission.objects.count() == 1


def test_a_key_reused_on_another_unit_is_a_conflict_inside_a_batch_and_its_neighbours_are_stored(work_project):
    client = annotator_client(work_project)
    units = lease(client, count=3)
    first = item(units[0], choice="left")
    submit(client, first)

    reused = item(units[1], choice="right", idempotency_key=first["idempotency_key"])
    response = submit(client, reused, item(units[2], choice="tie"))

    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["conflict", "stored"]
    assert "already used for a different answer" in results[0]["message"]
    assert Assignment.objects.get(id=units[1]["assignment"]).status == "active"  # still to be answered
    assert Submission.objects.count() == 2


def test_a_retry_of_the_same_item_in_a_batch_is_a_duplicate_not_a_conflict(work_project):
    client = annotator_client(work_project)
    units = lease(client, count=2)
    first = item(units[0], choice="left", aspects={"aesthetic": "right"})
    submit(client, first)

    reordered = {"aspects": {"aesthetic": "right"}, "choice": "left", **first}  # same item, keys in another order
    results = submit(client, reordered, item(units[1], choice="tie")).json()["results"]

    assert [r["status"] for r in results] == ["duplicate", "stored"]


def test_batch_submit_stores_good_items_and_names_the_bad_one(work_project):
    client = annotator_client(work_project)
    units = lease(client, "aspect_score", count=2)
    good = item(units[0], scores={k: 3 for k in work_project.aspect_keys}, rationale="clear")
    bad = item(units[1], scores={k: 9 for k in work_project.aspect_keys})

    results = submit(client, good, bad).json()["results"]

    assert [r["status"] for r in results] == ["stored", "rejected"]
    assert "from 1 to 5 (got 9)" in results[1]["message"]
    assert AspectScore.objects.count() == 4 and set(AspectScore.objects.values_list("rationale", flat=True)) == {"clear"}


def test_personal_rating_needs_consent_then_stores_the_rating(work_project):
    client = annotator_client(work_project)
    refused = client.post("/api/v1/projects/cats/work/next/", {"task_type": "personal_rating"}, format="json")
    assert refused.status_code == 403 and refused.json()["extra"]["code"] == "consent_required"

    client.put("/api/v1/me/profile/", {"consent": True, "age_band": "25-34", "art_experience": "hobby"}, format="json")
    unit = lease(client, "personal_rating", count=1)[0]
    submit(client, item(unit, rating=10))

    rating = PersonalRating.objects.get()
    assert rating.value == 10 and rating.annotator.annotator_profile.age_band == "25-34"


def test_my_profile_shows_my_own_pseudonym_the_same_before_and_after_i_fill_it_in(project):
    client = annotator_client(project)

    first = client.get("/api/v1/me/profile/").json()
    saved = client.put("/api/v1/me/profile/", {"consent": True, "nationality": "NL"}, format="json").json()
    again = client.get("/api/v1/me/profile/").json()

    mine = str(AnnotatorProfile.objects.get(user=client.user).pseudonym)
    assert first["pseudonym"] == saved["pseudonym"] == again["pseudonym"] == mine
    assert first["consent_at"] is None and again["nationality"] == "NL"


def test_artifact_flag_stores_reasons(work_project):
    client = annotator_client(work_project)
    unit = lease(client, "artifact_flag", count=1)[0]

    submit(client, item(unit, has_artifacts=True, reasons=["hands", "text"]))

    flag = ArtifactFlag.objects.get()
    assert flag.has_artifacts and flag.reasons == ["hands", "text"]


def test_skip_records_the_reason_and_frees_the_unit_for_others(work_project):
    client = annotator_client(work_project)
    unit = lease(client, count=1)[0]

    submit(client, item(unit, skip=True, reason="image did not load"))

    submission = Submission.objects.get()
    assert submission.kind == "skipped" and submission.skip_reason == "image did not load"
    assert WorkUnit.objects.get(id=unit["unit"]).filled == 0
    assert unit["unit"] not in {u["unit"] for u in lease(client, count=10)}


def test_undo_retracts_the_last_submission_and_gives_the_unit_back(work_project):
    client = annotator_client(work_project)
    unit = lease(client, count=1)[0]
    submit(client, item(unit, choice="left"))

    undone = client.post("/api/v1/projects/cats/work/undo/", {}, format="json")
    redo = submit(client, item(unit, choice="right"))

    assert undone.json()["units"][0]["assignment"] == unit["assignment"]
    assert redo.json()["results"][0]["status"] == "stored"
    rows = list(PreferenceJudgment.objects.order_by("id"))
    assert rows[0].retracted_at is not None and rows[1].retracted_at is None
    assert WorkUnit.objects.get(id=unit["unit"]).done == 1
    assert client.post("/api/v1/projects/cats/work/undo/", {}, format="json").status_code == 200
    assert client.post("/api/v1/projects/cats/work/undo/", {}, format="json").status_code == 404


def test_expired_lease_may_still_be_answered_while_the_unit_has_room(work_project):
    client = annotator_client(work_project)
    unit = lease(client, count=1)[0]
    Assignment.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    leases_expire(project=work_project)

    assert submit(client, item(unit, choice="left")).json()["results"][0]["status"] == "stored"
    assert WorkUnit.objects.get(id=unit["unit"]).filled == 1


def test_progress_counts_todays_work_and_what_is_left(work_project):
    client = annotator_client(work_project)
    unit = lease(client, count=1)[0]
    submit(client, item(unit, choice="left"))

    progress = client.get("/api/v1/projects/cats/work/progress/?task_type=pairwise").json()

    assert progress == {"done_today": 1, "done_total": 1, "left_in_project": 8}


# --- bad input: refused, nothing stored ------------------------------------------------------

def assert_refused(response, *words):
    assert response.status_code in (400, 403), response.content
    message = response.json()["message"]
    for word in words:
        assert word in message
    assert PreferenceJudgment.objects.count() + AspectScore.objects.count() + Submission.objects.count() == 0


def test_forged_unit_id_is_refused(work_project):
    client = annotator_client(work_project)
    lease(client, count=1)

    assert_refused(submit(client, {"idempotency_key": "k" * 10, "assignment": 999999, "choice": "left"}),
                   "999999 is not one you hold")


def test_someone_elses_unit_is_refused(work_project):
    owner, thief = annotator_client(work_project, "owner"), annotator_client(work_project, "thief")
    unit = lease(owner, count=1)[0]

    assert_refused(submit(thief, item(unit, choice="left")), "is not one you hold")


def test_a_second_judgment_on_the_same_unit_is_refused(work_project):
    client = annotator_client(work_project)
    unit = lease(client, count=1)[0]
    submit(client, item(unit, choice="left"))

    response = submit(client, item(unit, choice="right"))

    assert response.status_code == 400 and "already answered" in response.json()["message"]
    assert PreferenceJudgment.objects.count() == 1


@pytest.mark.parametrize(("task_type", "values", "words"), [
    ("pairwise", {"choice": "up"}, "choice must be one of left, right, tie"),
    ("pairwise", {"choice": "left", "aspects": {"taste": "left"}}, "unknown aspect 'taste'"),
    ("aspect_score", {"scores": {"aesthetic": 3}}, "scores must give every aspect"),
    ("aspect_score", {"scores": {"prompt_following": 0, "aesthetic": 1, "fidelity": 1, "harmlessness": 1}}, "from 1 to 5"),
    ("aspect_score", {"scores": {"prompt_following": 2.5, "aesthetic": 1, "fidelity": 1, "harmlessness": 1}}, "whole number"),
    ("aspect_score", {"scores": {"prompt_following": 2, "aesthetic": 1, "fidelity": 1, "harmlessness": 1},
                      "rationale": "x" * 1001}, "1001 characters, over the 1000-character limit"),
    ("artifact_flag", {"has_artifacts": "yes"}, "true or false"),
    ("artifact_flag", {"has_artifacts": True, "reasons": ["<script>"]}, "reasons must come from"),
    ("aspect_score", {"scores": {"prompt_following": 2, "aesthetic": 1, "fidelity": 1, "harmlessness": 1},
                      "rationale": "fine\x00"}, "NUL characters"),  # PostgreSQL text cannot hold a NUL
])
def test_values_outside_the_rules_are_refused(work_project, task_type, values, words):
    client = annotator_client(work_project)
    unit = lease(client, task_type, count=1)[0]

    assert_refused(submit(client, item(unit, **values)), words)


@pytest.mark.parametrize(("values", "words"), [
    ({"has_artifacts": True, "reasons": ["hands"], "note": {"\ud800": 1}}, "unpaired surrogates"),
    ({"has_artifacts": True, "idempotency_key": "\ud800-and-a-nul-\x00"}, "idempotency_key must be"),
])
def test_text_that_utf8_cannot_encode_is_refused_not_a_server_error(work_project, values, words):
    client = annotator_client(work_project)
    unit = lease(client, "artifact_flag", count=1)[0]
    body = json.dumps({"submissions": [item(unit, **values)]})  # "\ud800" escaped, as JSON.stringify writes it

    response = client.post("/api/v1/projects/cats/work/submit/", body, content_type="application/json")

    assert_refused(response, words)


def test_html_in_text_is_stored_as_text(work_project):
    client = annotator_client(work_project)
    unit = lease(client, "aspect_score", count=1)[0]
    script = "<script>alert(1)</script>"

    submit(client, item(unit, scores={k: 2 for k in work_project.aspect_keys}, rationale=script))

    assert AspectScore.objects.first().rationale == script


def test_post_without_csrf_token_is_refused(work_project):
    user = MembershipFactory(project=work_project, user=UserFactory(username="csrf"), role="annotator").user
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)

    assert_refused(client.post("/api/v1/projects/cats/work/next/", {"task_type": "pairwise"}, format="json"), "CSRF")


def test_suspended_annotator_may_neither_lease_nor_submit(work_project):
    client = annotator_client(work_project)
    unit = lease(client, count=1)[0]
    Membership.objects.filter(user=client.user).update(status="suspended", status_reason="failed gold checks")

    refused = client.post("/api/v1/projects/cats/work/next/", {"task_type": "pairwise"}, format="json")

    assert refused.status_code == 403 and "suspended: failed gold checks" in refused.json()["message"]
    assert_refused(submit(client, item(unit, choice="left")), "suspended")


def test_task_type_not_switched_on_is_refused(project):
    client = annotator_client(project)

    response = client.post("/api/v1/projects/cats/work/next/", {"task_type": "artifact_flag"}, format="json")

    assert response.status_code == 400 and "not switched on" in response.json()["message"]


def test_outsider_cannot_lease_from_a_project(work_project, outsider):
    client = APIClient()
    client.force_login(outsider)

    assert client.post("/api/v1/projects/cats/work/next/", {"task_type": "pairwise"}, format="json").status_code == 404


# --- gold units and the researcher's progress page -------------------------------------------

def test_researcher_marks_gold_units_that_are_then_mixed_in(work_project, researcher):
    comparison = WorkUnit.objects.filter(task_type="pairwise").first().comparison
    image = WorkUnit.objects.filter(task_type="artifact_flag").first().image
    client = APIClient()
    client.force_login(researcher)

    response = client.post("/api/v1/projects/cats/gold-units/", {"units": [
        {"task_type": "pairwise", "comparison": comparison.id, "answer": {"choice": "a"}},
        {"task_type": "artifact_flag", "image": image.id, "answer": {"has_artifacts": True}},
    ]}, format="json")

    assert response.json() == {"marked": 2}
    gold = WorkUnit.objects.get(is_gold=True, task_type="pairwise")
    assert gold.comparison_id == comparison.id and gold.gold_answer == {"choice": "a"}


@pytest.mark.parametrize(("unit", "words"), [
    ({"task_type": "pairwise", "comparison": 999999, "answer": {"choice": "a"}}, "no pairwise unit for comparison 999999"),
    ({"task_type": "pairwise", "comparison": None, "answer": {"choice": "left"}}, "answer must be"),
    ({"task_type": "personal_rating", "image": 1, "answer": {"rating": 3}}, "task_type"),
])
def test_bad_gold_units_are_refused_and_none_is_marked(work_project, researcher, unit, words):
    if unit.get("comparison") is None and unit["task_type"] == "pairwise":
        unit["comparison"] = WorkUnit.objects.filter(task_type="pairwise").first().comparison_id
    good = {"task_type": "pairwise", "comparison": WorkUnit.objects.filter(task_type="pairwise").last().comparison_id,
            "answer": {"choice": "b"}}
    client = APIClient()
    client.force_login(researcher)

    response = client.post("/api/v1/projects/cats/gold-units/", {"units": [good, unit]}, format="json")

    assert response.status_code == 400 and words in response.json()["message"]
    assert not WorkUnit.objects.filter(is_gold=True).exists()


def test_annotators_may_not_mark_gold_units(work_project):
    client = annotator_client(work_project)

    response = client.post("/api/v1/projects/cats/gold-units/", {"units": [
        {"task_type": "pairwise", "comparison": 1, "answer": {"choice": "a"}}]}, format="json")

    assert response.status_code == 403


def test_progress_page_shows_units_judgments_and_leases(work_project, researcher):
    client = annotator_client(work_project)
    units = lease(client, count=2)
    submit(client, item(units[0], choice="left", latency_ms=2000))
    page = APIClient()
    page.force_login(researcher)

    html = page.get("/projects/cats/progress/").content.decode()

    assert 'data-testid="progress-row-pairwise"' in html and 'data-testid="progress-annotator-anna"' in html
    row = html.split('data-testid="progress-row-pairwise"')[1].split("</tr>")[0]
    assert ">9<" in row and ">1<" in row  # 9 units, 1 judgment
    assert "Units leased to annotators right now: <strong>1</strong>" in html
    assert client.get("/projects/cats/progress/").status_code == 403
