"""Crowd-platform participants (issue 14, item 4): study links, pseudonymous participants signed in
by the link, the quota (enforced where work is leased and stored), the completion answer, the
researcher's participant list and rejection, who may do what, and bad input."""
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth import SESSION_KEY, get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client
from django.utils import timezone

from annotation import studies
from annotation.assignment import leases_expire
from annotation.models import (
    Assignment, Membership, PreferenceJudgment, StudyLink, StudyParticipant, TaskType,
)
from annotation.services import SUSPENSION_MARK, project_update
from core.models import AuditAction, AuditEntry
from tests.annotation.test_api import assert_error_shape
from tests.conftest import client_for
from tests.factories import prompts_with_all_pairs

pytestmark = pytest.mark.django_db
PID = "5f1a2b3c4d5e6f7a8b9c0d1e"  # Prolific participant ids are 24 hex characters
CODE = "C1A2B3C4"


@pytest.fixture
def study_project(project):
    """`cats` with pairwise and personal rating on, overlap 3, no gold, 3 prompts x 3 images (9 pairs)."""
    prompts_with_all_pairs(project, prompts=3, images_per_prompt=3)
    project_update(project=project, task_types=["pairwise", "personal_rating"], overlap=3, gold_rate=0.0)
    return project


@pytest.fixture
def link(study_project, researcher):
    return studies.study_link_create(project=study_project, actor=researcher, task_type="pairwise", quota=3,
                                     completion_code=CODE,
                                     completion_url=f"https://app.prolific.com/submissions/complete?cc={CODE}")


def join_path(link, pid=PID, **extra):
    params = {"PROLIFIC_PID": pid, "STUDY_ID": "study-1", "SESSION_ID": "session-1", **extra}
    query = "&".join(f"{name}={value}" for name, value in params.items() if value is not None)
    return f"/join/{link.token}/?{query}"


def participant_client(link, pid=PID) -> Client:
    """A browser that opened the study link as participant `pid` (signed in by the link)."""
    client = Client()
    answer = client.get(join_path(link, pid))
    assert answer.status_code == 302, answer.content
    client.participant = StudyParticipant.objects.get(link=link, participant_id=pid)
    return client


def lease(client, count=3, task_type="pairwise"):
    answer = client.post("/api/v1/projects/cats/work/next/", {"task_type": task_type, "count": count},
                         content_type="application/json")
    assert answer.status_code == 200, answer.content
    return answer.json()


def submit(client, *assignments, choice="left"):
    items = [{"idempotency_key": str(uuid.uuid4()), "assignment": a, "choice": choice} for a in assignments]
    return client.post("/api/v1/projects/cats/work/submit/", {"submissions": items}, content_type="application/json")


def given(participant) -> int:
    return Assignment.objects.filter(annotator=participant.user, status__in=["active", "completed"]).count()


# --- opening the link -----------------------------------------------------------------------

def test_opening_the_link_signs_in_a_new_pseudonymous_annotator_without_a_password(link):
    client = Client()
    answer = client.get(join_path(link))

    assert answer.status_code == 302 and answer["Location"] == "/work/cats/pairwise/"
    participant = StudyParticipant.objects.get()
    user = participant.user
    assert (participant.participant_id, participant.study_id, participant.session_id) == (PID, "study-1", "session-1")
    assert not user.has_usable_password() and PID not in user.username and PID not in user.email
    assert Membership.objects.get(project=link.project, user=user).role == "annotator"
    assert client.session[SESSION_KEY] == str(user.pk)
    assert client.get("/work/cats/pairwise/").status_code == 200


def test_reopening_with_the_same_participant_id_resumes_the_same_person_in_a_new_browser(link):
    first = participant_client(link)
    held = [u["assignment"] for u in lease(first)["units"]]

    second = participant_client(link)  # the tab was closed; a fresh browser session

    assert StudyParticipant.objects.count() == 1 and get_user_model().objects.filter(
        username__startswith="participant-").count() == 1
    assert [u["assignment"] for u in lease(second)["units"]] == held


def test_two_participant_ids_are_two_people(link):
    one, two = participant_client(link, "a" * 24), participant_client(link, "b" * 24)
    assert one.participant.user != two.participant.user
    assert one.participant.user.annotator_profile.pseudonym != two.participant.user.annotator_profile.pseudonym


def test_a_generic_link_takes_participant_id(study_project, researcher):
    generic = studies.study_link_create(project=study_project, actor=researcher, task_type="pairwise", quota=2,
                                        platform="generic", completion_code="DONE")
    assert Client().get(f"/join/{generic.token}/?participant_id=worker-17").status_code == 302
    assert StudyParticipant.objects.get().participant_id == "worker-17"
    refused = Client().get(f"/join/{generic.token}/?PROLIFIC_PID={PID}")
    assert refused.status_code == 400 and b"participant_id" in refused.content


@pytest.mark.parametrize("pid", [None, "", "   "])
def test_a_missing_participant_id_is_a_400_page_naming_the_parameter(link, pid):
    answer = Client().get(join_path(link, pid))

    assert answer.status_code == 400
    html = answer.content.decode()
    assert 'data-parameter="PROLIFIC_PID"' in html and "without its PROLIFIC_PID parameter" in html
    assert not StudyParticipant.objects.exists() and SESSION_KEY not in Client().session


def test_an_oversized_participant_id_is_a_400_page_naming_the_parameter_and_its_limit(link):
    answer = Client().get(join_path(link, "x" * 129))

    assert answer.status_code == 400
    html = answer.content.decode()
    assert "The PROLIFIC_PID parameter is 129 characters long; at most 128 are accepted." in html
    assert not StudyParticipant.objects.exists()
    assert Client().get(join_path(link, "x" * 128)).status_code == 302  # the limit itself is fine


def test_an_oversized_session_id_is_refused_naming_it(link):
    answer = Client().get(join_path(link, SESSION_ID="s" * 200))
    assert answer.status_code == 400 and 'data-parameter="SESSION_ID"' in answer.content.decode()


def test_a_participant_id_with_unprintable_characters_is_refused(link):
    answer = Client().get(join_path(link, "abc%00def"))
    assert answer.status_code == 400 and b"not printable" in answer.content


def test_an_unknown_token_is_not_found(db):
    assert Client().get(f"/join/nope/?PROLIFIC_PID={PID}").status_code == 404


def test_a_deactivated_link_admits_no_one_new_but_lets_those_who_started_resume(link, researcher):
    participant_client(link)
    studies.study_link_deactivate(link=link, actor=researcher)

    newcomer = Client().get(join_path(link, "c" * 24))
    assert newcomer.status_code == 410 and b"This study is closed" in newcomer.content
    assert Client().get(join_path(link)).status_code == 302
    assert AuditEntry.objects.filter(action=AuditAction.STUDY_LINK_DEACTIVATED).count() == 1


def test_a_personal_rating_link_asks_for_consent_before_any_rating(study_project, researcher):
    rating = studies.study_link_create(project=study_project, actor=researcher, task_type="personal_rating", quota=2,
                                       completion_code="R")
    client = Client()
    assert client.get(join_path(rating))["Location"] == "/work/cats/personal_rating/"
    page = client.get("/work/cats/personal_rating/").content.decode()
    assert 'data-testid="onboarding-form"' in page and '"consent": false' in page
    refused = client.post("/api/v1/projects/cats/work/next/", {"task_type": "personal_rating"},
                          content_type="application/json")
    assert refused.status_code == 403 and "consent" in refused.json()["message"]
    client.put("/api/v1/me/profile/", {"consent": True, "age_band": "25-34"}, content_type="application/json")
    assert len(lease(client, task_type="personal_rating")["units"]) == 2


def test_a_participant_works_on_their_links_task_type_only(link):
    client = participant_client(link)
    client.put("/api/v1/me/profile/", {"consent": True}, content_type="application/json")
    answer = client.post("/api/v1/projects/cats/work/next/", {"task_type": "personal_rating"},
                         content_type="application/json")
    assert answer.status_code == 403 and "pairwise preference work only" in answer.json()["message"]


# --- the quota ----------------------------------------------------------------------------

def test_the_lease_never_goes_beyond_the_quota(link):
    client = participant_client(link)

    answer = lease(client, count=10)

    assert len(answer["units"]) == 3 == given(client.participant) and answer["state"] == "work"


def test_answered_but_unsent_units_count_so_the_participant_gets_nothing_more_until_they_arrive(link):
    client = participant_client(link)
    held = [u["assignment"] for u in lease(client)["units"]]
    assert submit(client, held[0]).status_code == 200

    again = lease(client, count=5)  # two answers are still on their way: their units stay held

    assert sorted(u["assignment"] for u in again["units"]) == sorted(held[1:]) and again["state"] == "work"
    assert given(client.participant) == 3


def test_when_the_quota_is_done_work_next_answers_quota_done_with_the_completion(link):
    client = participant_client(link)
    held = [u["assignment"] for u in lease(client)["units"]]
    assert submit(client, *held).status_code == 200

    answer = lease(client)

    assert answer["units"] == [] and answer["no_more_work"] is True and answer["state"] == "quota_done"
    assert answer["completion"] == {"code": CODE, "url": f"https://app.prolific.com/submissions/complete?cc={CODE}",
                                    "quota": 3, "judged": 3}
    client.participant.refresh_from_db()
    assert client.participant.completed_at is not None


def test_when_no_work_is_left_a_participant_gets_the_completion_too(study_project, researcher):
    big = studies.study_link_create(project=study_project, actor=researcher, task_type="pairwise", quota=50,
                                    completion_code=CODE)
    client = participant_client(big)
    done = 0
    while units := lease(client, count=10)["units"]:
        assert submit(client, *[u["assignment"] for u in units]).status_code == 200
        done += len(units)

    answer = lease(client)
    assert done == 9 and answer["state"] == "no_work_left"
    assert answer["completion"] == {"code": CODE, "url": None, "quota": 50, "judged": 9}


def test_skipped_units_do_not_count_towards_the_quota(link):
    client = participant_client(link)
    first = lease(client, count=1)["units"][0]["assignment"]
    skip = {"idempotency_key": str(uuid.uuid4()), "assignment": first, "skip": True, "reason": "cannot judge"}
    assert client.post("/api/v1/projects/cats/work/submit/", {"submissions": [skip]},
                       content_type="application/json").status_code == 200

    assert len(lease(client, count=10)["units"]) == 3


def test_an_ordinary_annotator_is_answered_state_work_and_no_completion(study_project, annotator):
    answer = client_for(annotator).post("/api/v1/projects/cats/work/next/", {"task_type": "pairwise", "count": 3},
                                        format="json").json()
    assert answer["state"] == "work" and answer["completion"] is None and len(answer["units"]) == 3


def test_only_study_participants_pay_for_the_quota_check_on_lease_and_submit(link, study_project, annotator):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    participant = participant_client(link)
    assert Membership.objects.get(user=participant.participant.user).study_participant
    ordinary = client_for(annotator)
    assert not Membership.objects.get(user=annotator, project=study_project).study_participant

    for client, checked in ((ordinary, False), (participant, True)):
        with CaptureQueriesContext(connection) as queries:
            units = lease(client, count=1)["units"]
            submit(client, units[0]["assignment"])
        asked = any(StudyParticipant._meta.db_table in q["sql"] for q in queries.captured_queries)
        assert asked == checked


def test_a_participant_past_the_quota_cannot_store_an_answer_to_an_expired_lease(link, settings):
    client = participant_client(link)
    late = lease(client, count=1)["units"][0]["assignment"]
    Assignment.objects.filter(pk=late).update(expires_at=timezone.now() - timedelta(minutes=1))
    leases_expire(project=link.project)
    fresh = [u["assignment"] for u in lease(client, count=3)["units"]]
    assert len(fresh) == 3 and submit(client, *fresh).status_code == 200

    refused = submit(client, late)

    assert_error_shape(refused, 400, "quota of 3 units is reached")
    assert given(client.participant) == 3 and not Assignment.objects.filter(pk=late, status="completed").exists()


def test_an_expired_lease_within_the_quota_may_still_be_answered(link):
    client = participant_client(link)
    late = lease(client, count=1)["units"][0]["assignment"]
    Assignment.objects.filter(pk=late).update(expires_at=timezone.now() - timedelta(minutes=1))
    leases_expire(project=link.project)

    assert submit(client, late).json()["results"][0]["status"] == "stored"


# --- the researcher's side ----------------------------------------------------------------

def test_creating_a_link_is_audited_and_refuses_bad_settings_by_name(study_project, researcher):
    assert AuditEntry.objects.filter(action=AuditAction.STUDY_LINK_CREATED).count() == 0
    link = studies.study_link_create(project=study_project, actor=researcher, task_type="pairwise", quota=5,
                                     completion_code="ABC")
    assert len(link.token) >= 40 and link.is_active
    assert AuditEntry.objects.filter(action=AuditAction.STUDY_LINK_CREATED, actor=researcher).count() == 1
    cases = [({"task_type": "aspect_score"}, "task_type"), ({"quota": 0}, "quota"),
             ({"completion_code": ""}, "completion_code"),
             ({"completion_url": "javascript:alert(1)"}, "completion_url"),
             ({"completion_code": "has space"}, "completion_code"), ({"platform": "mturk"}, "platform")]
    for change, field in cases:
        arguments = {"task_type": "pairwise", "quota": 5, "completion_code": "ABC", **change}
        with pytest.raises(ValidationError) as refused:
            studies.study_link_create(project=study_project, actor=researcher, **arguments)
        assert field in refused.value.message_dict, change


def test_an_annotator_may_not_create_a_study_link(study_project, annotator):
    with pytest.raises(PermissionDenied):
        studies.study_link_create(project=study_project, actor=annotator, task_type="pairwise", quota=1,
                                  completion_code="X")


def test_the_api_creates_lists_and_deactivates_links_with_a_prolific_url(study_project, researcher):
    client = client_for(researcher)
    created = client.post("/api/v1/projects/cats/study-links/",
                          {"task_type": "pairwise", "quota": 4, "completion_code": "XYZ"}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["url"].endswith(f"/join/{body['token']}/?PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}"
                                "&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}")
    assert body["platform"] == "prolific" and body["participants"] == 0 and body["is_active"]
    listed = client.get("/api/v1/projects/cats/study-links/").json()["results"]
    assert [row["id"] for row in listed] == [body["id"]]
    closed = client.post(f"/api/v1/projects/cats/study-links/{body['id']}/deactivate/")
    assert closed.status_code == 200 and closed.json()["is_active"] is False


def test_the_api_rejects_bad_link_settings_naming_the_fields(study_project, researcher):
    answer = client_for(researcher).post("/api/v1/projects/cats/study-links/",
                                         {"task_type": "pairwise", "quota": 0}, format="json")
    assert answer.status_code == 400 and "quota" in answer.json()["extra"]["fields"]
    answer = client_for(researcher).post("/api/v1/projects/cats/study-links/",
                                         {"task_type": "artifact_flag", "quota": 3, "completion_code": "A"},
                                         format="json")
    assert_error_shape(answer, 400)
    assert "not switched on" in str(answer.json())


def test_the_participant_list_shows_units_quota_time_and_status(link, researcher):
    client = participant_client(link)
    held = [u["assignment"] for u in lease(client)["units"]]
    submit(client, held[0])
    submit(client, held[1])
    first, second = PreferenceJudgment.objects.filter(annotator=client.participant.user).order_by("id")
    from annotation.models import Submission

    start = timezone.now() - timedelta(minutes=5)
    StudyParticipant.objects.filter(pk=client.participant.pk).update(started_at=start - timedelta(seconds=18))
    Submission.objects.filter(pk=first.submission_id).update(created_at=start)
    Submission.objects.filter(pk=second.submission_id).update(created_at=start + timedelta(seconds=42))

    rows = client_for(researcher).get(f"/api/v1/projects/cats/study-links/{link.pk}/participants/").json()["results"]

    assert len(rows) == 1
    row = rows[0]
    assert row["participant_id"] == PID and row["judged"] == 2 and row["held"] == 1
    # From opening the link to the last judgment: a batch of answers stored at once still took time.
    assert row["seconds_spent"] == 60.0 and row["status"] == "working"
    assert row["pseudonym"] == str(client.participant.user.annotator_profile.pseudonym)
    page = Client()
    page.force_login(researcher)
    html = page.get(f"/projects/cats/study-links/{link.pk}/").content.decode()
    assert PID in html and "2 / 3" in html and "60 s" in html and "Working" in html


def test_rejecting_marks_the_participants_judgments_as_a_suspension_does_and_stops_their_work(link, researcher):
    client = participant_client(link)
    held = [u["assignment"] for u in lease(client)["units"]]
    submit(client, *held[:2])

    answer = client_for(researcher).post(
        f"/api/v1/projects/cats/study-links/{link.pk}/participants/{client.participant.pk}/reject/",
        {"reason": "answered in 200 ms each"}, format="json")

    assert answer.status_code == 200 and answer.json()["status"] == "rejected"
    marks = set(PreferenceJudgment.objects.filter(annotator=client.participant.user)
                .values_list("excluded_reason", flat=True))
    assert marks == {f"{SUSPENSION_MARK}: {studies.REJECTION_MARK}: answered in 200 ms each"}
    assert Membership.objects.get(user=client.participant.user).status == "suspended"
    assert not Assignment.objects.filter(annotator=client.participant.user, status="active").exists()
    assert AuditEntry.objects.filter(action=AuditAction.PARTICIPANT_REJECTED, actor=researcher).count() == 1
    refused = client.post("/api/v1/projects/cats/work/next/", {"task_type": "pairwise"},
                          content_type="application/json")
    assert refused.status_code == 403
    reopened = Client().get(join_path(link))
    assert reopened.status_code == 403 and b"answered in 200 ms each" in reopened.content


def test_the_reject_page_needs_a_reason_and_then_rejects(link, researcher):
    client = participant_client(link)
    page = Client()
    page.force_login(researcher)
    url = f"/projects/cats/study-links/{link.pk}/participants/{client.participant.pk}/reject/"

    page.post(url, {"reason": "  "})
    assert StudyParticipant.objects.get().rejected_at is None
    page.post(url, {"reason": "straight-lining"})
    assert StudyParticipant.objects.get().rejection_reason == "straight-lining"


def test_the_members_page_creates_and_deactivates_study_links(study_project, researcher):
    page = Client()
    page.force_login(researcher)
    answer = page.post("/projects/cats/study-links/", {"task_type": "pairwise", "platform": "prolific", "quota": "7",
                                                       "completion_code": "QWERTY", "completion_url": ""})
    assert answer.status_code == 302 and answer["Location"].endswith("/projects/cats/members/#study-links")
    link = StudyLink.objects.get()
    html = page.get("/projects/cats/members/").content.decode()
    assert f"/join/{link.token}/?PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}" in html and "QWERTY" in html
    page.post(f"/projects/cats/study-links/{link.pk}/deactivate/")
    link.refresh_from_db()
    assert not link.is_active
    refused = page.post("/projects/cats/study-links/", {"task_type": "pairwise", "quota": "many"}, follow=True)
    assert "No study link was created" in refused.content.decode() and StudyLink.objects.count() == 1


# --- who may do what ----------------------------------------------------------------------

@pytest.mark.parametrize("who, expected", [("annotator", 403), ("outsider", 404), ("anonymous", 401),
                                           ("participant", 403)])
def test_study_endpoints_are_for_the_projects_researchers_and_admins(request, link, who, expected):
    participant = participant_client(link, "d" * 24).participant
    if who == "anonymous":
        user = None
    elif who == "participant":  # an annotator of the project, through the link
        user = participant.user
    else:
        user = request.getfixturevalue(who)
    client = client_for(user)
    base = "/api/v1/projects/cats/study-links/"
    for answer in (client.get(base),
                   client.post(base, {"task_type": "pairwise", "quota": 2, "completion_code": "A"}, format="json"),
                   client.post(f"{base}{link.pk}/deactivate/"),
                   client.get(f"{base}{link.pk}/participants/"),
                   client.post(f"{base}{link.pk}/participants/{participant.pk}/reject/", {"reason": "x"},
                               format="json")):
        assert answer.status_code in ((401, 403) if expected == 401 else (expected,)), answer.content
        assert_error_shape(answer, answer.status_code)
    link.refresh_from_db()
    participant.refresh_from_db()
    assert StudyLink.objects.count() == 1 and link.is_active and participant.rejected_at is None


@pytest.mark.parametrize("who, expected", [("annotator", 403), ("outsider", 404)])
def test_study_pages_are_for_the_projects_researchers_and_admins(request, link, who, expected):
    participant = participant_client(link, "e" * 24).participant
    page = Client()
    page.force_login(request.getfixturevalue(who))
    assert page.post("/projects/cats/study-links/", {"task_type": "pairwise", "quota": "2",
                                                     "completion_code": "A"}).status_code == expected
    assert page.get(f"/projects/cats/study-links/{link.pk}/").status_code == expected
    assert page.post(f"/projects/cats/study-links/{link.pk}/deactivate/").status_code == expected
    assert page.post(f"/projects/cats/study-links/{link.pk}/participants/{participant.pk}/reject/",
                     {"reason": "x"}).status_code == expected
    link.refresh_from_db()
    assert StudyLink.objects.count() == 1 and link.is_active and StudyParticipant.objects.get().rejected_at is None


def test_an_anonymous_visitor_is_sent_to_sign_in_for_the_study_pages(link):
    page = Client()
    for answer in (page.get(f"/projects/cats/study-links/{link.pk}/"), page.post("/projects/cats/study-links/"),
                   page.post(f"/projects/cats/study-links/{link.pk}/deactivate/")):
        assert answer.status_code == 302 and "/accounts/login/" in answer["Location"]


def test_another_projects_link_is_not_found_under_this_project(link, outsider):
    from annotation.models import Project

    other = Project.objects.get(slug="other")  # pairwise is on by default
    assert other.task_types == [TaskType.PAIRWISE.value]
    theirs = studies.study_link_create(project=other, actor=outsider, task_type="pairwise", quota=1,
                                       completion_code="O")
    answer = client_for(outsider).get(f"/api/v1/projects/other/study-links/{link.pk}/participants/")
    assert answer.status_code == 404
    assert client_for(outsider).get(f"/api/v1/projects/other/study-links/{theirs.pk}/participants/").status_code == 200


# --- exports --------------------------------------------------------------------------------

def export_contents(out) -> bytes:
    """Every file of an export as readable bytes: Parquet files (compressed) decoded to their rows,
    the others (JSONL, uncompressed tar shards, card, manifest) as they are."""
    import json

    import pyarrow.parquet as pq

    parts = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        if path.suffix == ".parquet":
            rows = pq.read_table(path).to_pylist()
            parts.append(json.dumps(rows, default=lambda v: None if isinstance(v, bytes) else str(v)).encode())
        else:
            parts.append(path.read_bytes())
    return b"\n".join(parts)


def test_no_export_format_or_container_carries_a_participant_id_only_the_pseudonym(project, researcher, tmp_path):
    from annotation.models import AspectScore, PersonalRating, Source
    from annotation.services import profile_update
    from curation import services as curation_services
    from curation.exports.options import CONTAINERS, FORMATS
    from curation.exports.services import dataset_export_build, dataset_export_create
    from curation.models import FilterRun
    from tests.conftest import wait_for
    from tests.curation.export_data import build_export_data

    data = build_export_data(project)
    project_update(project=project, task_types=["pairwise", "aspect_score", "personal_rating"])
    link = studies.study_link_create(project=project, actor=researcher, task_type="pairwise", quota=50,
                                     completion_code=CODE)
    secret_ids = ["PIDSECRETALPHA0000000001", "PIDSECRETBRAVO0000000002"]
    people = [participant_client(link, pid).participant.user for pid in secret_ids]
    judgments, scores, ratings = [], [], []
    for user in people:
        profile_update(user=user, consent=True, nationality="NL")
        for comparison in data.comparisons:
            judgments.append(PreferenceJudgment(project=project, source=Source.HUMAN, annotator=user,
                                                comparison=comparison, aspect="overall", choice="a",
                                                left_image=comparison.image_a, latency_ms=800))
        for image in data.images:
            scores += [AspectScore(project=project, source=Source.HUMAN, annotator=user, image=image, aspect=key,
                                   value=3.0) for key in project.aspect_keys]
            ratings.append(PersonalRating(project=project, source=Source.HUMAN, annotator=user, image=image, value=4))
    PreferenceJudgment.objects.bulk_create(judgments)
    AspectScore.objects.bulk_create(scores)
    PersonalRating.objects.bulk_create(ratings)
    run = curation_services.filter_run_create(project=project, name="with-participants", rules={
        "consensus": "majority", "min_judgments": 2, "exclude_position_biased": False, "min_rater_agreement": None})
    curation_services.filter_run_execute(run_id=run.pk)
    run = wait_for(lambda: (r := FilterRun.objects.get(pk=run.pk)).is_finished and r, what="the filter run")
    assert run.status == "succeeded", run.message
    pseudonyms = {str(user.annotator_profile.pseudonym).encode() for user in people}

    for fmt in FORMATS:
        for container in CONTAINERS:
            out = tmp_path / f"{fmt}-{container}"
            options = {"images": "reference", **({"rows": "judgments"} if fmt == "pickapic" else {})}
            created = dataset_export_create(project=project, format=fmt, container=container, destination=str(out),
                                            filter_run=run, options=options, anywhere=True, enqueue=False)
            built = dataset_export_build(export_id=created.pk)
            assert built.status == "succeeded", (fmt, container, built.message)
            everything = export_contents(out)
            for secret in [*secret_ids, "st-1", "session-1"]:
                assert secret.encode() not in everything, (fmt, container, secret)
            if fmt in ("pickapic", "pamela"):  # the formats with a rater column name them by pseudonym
                assert all(p in everything for p in pseudonyms), (fmt, container)


# --- concurrency ----------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_one_participant_in_six_tabs_at_once_never_goes_past_the_quota(study_project, researcher):
    import threading

    from django.db import connection

    from annotation.assignment import assignments_lease_next
    from annotation.judging import submission_store

    if connection.vendor != "postgresql":
        pytest.skip("row locks are PostgreSQL's; set DATABASE_URL to run")
    link = studies.study_link_create(project=study_project, actor=researcher, task_type="pairwise", quota=4,
                                     completion_code=CODE)
    participant = participant_client(link).participant
    errors, peaks = [], []

    def tab(seed):
        membership = Membership.objects.select_related("project", "user").get(user=participant.user)
        try:
            for step in range(8):
                leased = assignments_lease_next(membership=membership, task_type="pairwise", count=1 + (seed + step) % 3)
                peaks.append(given(participant))
                if not leased:
                    return
                submission_store(membership=membership, item={"idempotency_key": uuid.uuid4().hex,
                                                              "assignment": leased[0].id, "choice": "left"})
        except Exception as exc:  # a deadlock between the lease and submit paths would land here
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=tab, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == [] and max(peaks) <= 4
    assert Assignment.objects.filter(annotator=participant.user, status="completed").count() == 4
