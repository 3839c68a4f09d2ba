import pytest
from django.test import Client
from rest_framework.test import APIClient

from annotation.models import AnnotatorProfile, Membership, PreferenceJudgment, Project, Source
from annotation.services import annotator_profile_ensure
from tests.conftest import client_for
from tests.factories import ComparisonFactory, ImageFactory, MembershipFactory, PromptFactory, UserFactory

pytestmark = pytest.mark.django_db


def assert_error_shape(response, status, *words):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"message", "extra"} and isinstance(body["message"], str)
    for word in words:
        assert word in body["message"]
    return body


# --- authentication ---------------------------------------------------------------------

def test_anonymous_call_is_refused_with_401_and_the_error_shape(project):
    response = APIClient().get("/api/v1/projects/")

    assert_error_shape(response, 401, "credentials were not provided")
    assert response["WWW-Authenticate"].startswith("Token")


def test_a_wrong_token_is_refused_with_401(project):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    assert_error_shape(client.get("/api/v1/projects/"), 401, "Invalid token")


def test_token_endpoint_trades_a_password_for_a_token_that_works(researcher, project):
    response = APIClient().post("/api/v1/auth/token/", {"username": "rita", "password": "correct horse battery"})
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")

    assert [p["slug"] for p in client.get("/api/v1/projects/").json()["results"]] == ["cats"]


def test_token_endpoint_refuses_a_wrong_password(researcher):
    response = APIClient().post("/api/v1/auth/token/", {"username": "rita", "password": "nope"})

    assert_error_shape(response, 400, "Unable to log in")


def test_session_post_without_csrf_token_is_refused(researcher):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(researcher)

    response = client.post("/api/v1/projects/", {"slug": "x", "name": "X"}, format="json")

    assert_error_shape(response, 403, "CSRF")
    assert not Project.objects.filter(slug="x").exists()


def test_session_post_with_csrf_token_is_accepted(researcher):
    client = Client(enforce_csrf_checks=True)
    client.force_login(researcher)
    client.get("/admin/login/")  # sets the csrftoken cookie
    token = client.cookies["csrftoken"].value

    response = client.post("/api/v1/projects/", {"slug": "x", "name": "X"}, content_type="application/json",
                           HTTP_X_CSRFTOKEN=token)

    assert response.status_code == 201


# --- projects: who sees and manages what -------------------------------------------------

def test_annotator_lists_only_the_projects_they_belong_to(annotator, outsider):
    slugs = [p["slug"] for p in client_for(annotator).get("/api/v1/projects/").json()["results"]]

    assert slugs == ["cats"]


def test_platform_admin_lists_every_project(platform_admin, project, outsider):
    body = client_for(platform_admin).get("/api/v1/projects/").json()

    assert [p["slug"] for p in body["results"]] == ["cats", "other"]
    assert all(p["role"] == "admin" for p in body["results"])


def test_someone_elses_project_is_not_found_for_an_outsider(project, outsider):
    assert_error_shape(client_for(outsider).get("/api/v1/projects/cats/"), 404, "No project 'cats'")
    assert_error_shape(client_for(outsider).get("/api/v1/projects/cats/images/"), 404)
    assert_error_shape(client_for(outsider).patch("/api/v1/projects/cats/", {"name": "Mine"}, format="json"), 404)


def test_researcher_creates_a_project_with_visionprefer_aspects_and_becomes_its_researcher(researcher):
    response = client_for(researcher).post("/api/v1/projects/", {"slug": "dogs", "name": "Dogs"}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert [a["key"] for a in body["aspects"]] == ["prompt_following", "aesthetic", "fidelity", "harmlessness"]
    assert body["role"] == "researcher"
    assert Membership.objects.get(project__slug="dogs").user == researcher


def test_annotator_may_not_create_projects(annotator):
    response = client_for(annotator).post("/api/v1/projects/", {"slug": "dogs", "name": "Dogs"}, format="json")

    assert_error_shape(response, 403, "researcher permission")
    assert not Project.objects.filter(slug="dogs").exists()


def test_project_create_refuses_a_taken_slug_naming_the_field(researcher, project):
    response = client_for(researcher).post("/api/v1/projects/", {"slug": "cats", "name": "Again"}, format="json")

    body = assert_error_shape(response, 400, "slug")
    assert "already exists" in str(body["extra"]["fields"]["slug"])


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"task_types": ["pairwise", "dance"]}, "task_types"),
        ({"task_types": []}, "task_types"),
        ({"gold_rate": 1.5}, "gold_rate"),
        ({"overlap": 0}, "overlap"),
        ({"score_scale": 1}, "score_scale"),
        ({"aspects": [{"key": "a"}, {"key": "a"}]}, "aspects"),
        ({"aspects": [{"key": "has space"}]}, "aspects"),
    ],
)
def test_project_update_refuses_bad_fields_and_changes_nothing(researcher, project, payload, field):
    response = client_for(researcher).patch("/api/v1/projects/cats/", payload, format="json")

    body = assert_error_shape(response, 400, field)
    assert field in body["extra"]["fields"]
    project.refresh_from_db()
    assert project.task_types == ["pairwise"] and project.gold_rate == 0.05


def test_researcher_updates_their_project(researcher, project):
    response = client_for(researcher).patch(
        "/api/v1/projects/cats/",
        {"overlap": 5, "task_types": ["pairwise", "artifact_flag"], "aspects": [{"key": "realism"}]}, format="json")

    assert response.status_code == 200
    project.refresh_from_db()
    assert project.overlap == 5 and project.task_types == ["pairwise", "artifact_flag"]
    assert project.aspects == [{"key": "realism", "label": "Realism", "question": ""}]


def test_annotator_may_read_but_not_update_their_project(annotator):
    client = client_for(annotator)

    assert client.get("/api/v1/projects/cats/").json()["role"] == "annotator"
    assert_error_shape(client.patch("/api/v1/projects/cats/", {"overlap": 9}, format="json"), 403, "researcher or admin")


# --- members ------------------------------------------------------------------------------

def test_researcher_adds_changes_and_removes_a_member(researcher, project):
    UserFactory(username="bob")
    client = client_for(researcher)

    added = client.post("/api/v1/projects/cats/members/", {"username": "bob", "role": "annotator"}, format="json")
    changed = client.patch("/api/v1/projects/cats/members/bob/", {"role": "researcher"}, format="json")
    listed = client.get("/api/v1/projects/cats/members/").json()["results"]
    removed = client.delete("/api/v1/projects/cats/members/bob/")

    assert added.status_code == 201 and changed.json()["role"] == "researcher"
    assert {m["username"]: m["role"] for m in listed} == {"bob": "researcher", "rita": "researcher"}
    assert removed.status_code == 204
    assert not Membership.objects.filter(user__username="bob").exists()


def test_researcher_may_not_grant_the_admin_role(researcher, project):
    UserFactory(username="bob")

    response = client_for(researcher).post("/api/v1/projects/cats/members/", {"username": "bob", "role": "admin"},
                                           format="json")

    assert_error_shape(response, 403, "admin role")


def test_adding_an_unknown_user_is_a_clear_404(researcher, project):
    response = client_for(researcher).post("/api/v1/projects/cats/members/", {"username": "ghost"}, format="json")

    assert_error_shape(response, 404, "No active user named 'ghost'")


def test_annotator_may_not_list_members(annotator):
    assert_error_shape(client_for(annotator).get("/api/v1/projects/cats/members/"), 403)


def test_members_list_shows_each_members_stable_pseudonym_to_researchers_and_platform_admins(
        researcher, annotator, project, platform_admin):
    assert not AnnotatorProfile.objects.filter(user=annotator).exists()  # added outside the services

    listed = client_for(researcher).get("/api/v1/projects/cats/members/").json()["results"]
    again = client_for(platform_admin).get("/api/v1/projects/cats/members/").json()["results"]

    pseudonyms = {m["username"]: m["pseudonym"] for m in listed}
    assert pseudonyms == {u.username: str(AnnotatorProfile.objects.get(user=u).pseudonym)
                          for u in (researcher, annotator)}
    assert {m["username"]: m["pseudonym"] for m in again} == pseudonyms


def test_member_answers_of_add_and_suspend_carry_the_pseudonym(researcher, annotator, project):
    UserFactory(username="bob")
    client = client_for(researcher)

    added = client.post("/api/v1/projects/cats/members/", {"username": "bob"}, format="json").json()
    suspended = client.post("/api/v1/projects/cats/members/anna/suspend/", {"reason": "x"}, format="json").json()

    assert added["pseudonym"] == str(AnnotatorProfile.objects.get(user__username="bob").pseudonym)
    assert suspended["pseudonym"] == str(AnnotatorProfile.objects.get(user=annotator).pseudonym)


def test_an_annotator_gets_no_other_members_pseudonym(researcher, annotator, project):
    theirs = str(annotator_profile_ensure(user=researcher).pseudonym)
    client = client_for(annotator)

    answers = [client.get("/api/v1/projects/cats/members/"), client.get("/api/v1/projects/cats/"),
               client.post("/api/v1/projects/cats/members/rita/reinstate/"), client.get("/api/v1/me/profile/")]

    assert [a.status_code for a in answers] == [403, 200, 403, 200]
    assert not any(theirs in a.content.decode() for a in answers)


# --- prompts, images, comparisons ---------------------------------------------------------

def test_images_list_filters_by_generator_and_paginates(annotator, project):
    prompt = PromptFactory(project=project)
    for generator in ["sdxl", "sdxl", "sd15"]:
        ImageFactory(prompt=prompt, generator=generator)

    body = client_for(annotator).get("/api/v1/projects/cats/images/?generator=sdxl&page_size=1").json()

    assert body["count"] == 2 and len(body["results"]) == 1 and body["next"]
    image = body["results"][0]
    assert image["generator"] == "sdxl" and image["preview_url"].endswith(".webp")


def test_prompts_list_filters_by_category_and_text(annotator, project):
    PromptFactory(project=project, text="a cat on a mat", category="animals")
    PromptFactory(project=project, text="a dog on a log", category="animals")
    PromptFactory(project=project, text="a cat in space", category="space")

    results = client_for(annotator).get("/api/v1/projects/cats/prompts/?category=animals&search=CAT").json()["results"]

    assert [p["text"] for p in results] == ["a cat on a mat"]


def test_comparisons_list_shows_the_pairs_of_a_prompt(annotator, project):
    comparison = ComparisonFactory(prompt=PromptFactory(project=project))

    results = client_for(annotator).get(f"/api/v1/projects/cats/comparisons/?prompt={comparison.prompt_id}").json()["results"]

    assert [(c["image_a"], c["image_b"]) for c in results] == [(comparison.image_a_id, comparison.image_b_id)]


# --- judgments: annotators see only their own ----------------------------------------------

def _preference(comparison, user, choice="a"):
    return PreferenceJudgment.objects.create(project=comparison.project, source=Source.HUMAN, annotator=user,
                                             comparison=comparison, choice=choice, left_image=comparison.image_a)


def test_annotator_sees_only_their_own_judgments_and_researcher_sees_all(researcher, annotator, project):
    colleague = MembershipFactory(project=project, user=UserFactory(username="carl")).user
    comparison = ComparisonFactory(prompt=PromptFactory(project=project))
    mine = _preference(comparison, annotator)
    _preference(comparison, colleague, choice="b")

    seen_by_annotator = client_for(annotator).get("/api/v1/projects/cats/judgments/preferences/").json()["results"]
    seen_by_researcher = client_for(researcher).get("/api/v1/projects/cats/judgments/preferences/").json()["results"]

    assert [j["id"] for j in seen_by_annotator] == [mine.id]
    assert len(seen_by_researcher) == 2


# --- the shape of every error ----------------------------------------------------------------

def test_unknown_api_path_answers_json_404(researcher):
    assert_error_shape(client_for(researcher).get("/api/v1/nothing-here/"), 404, "No API endpoint")


def test_wrong_method_answers_405_in_the_error_shape(researcher, project):
    assert_error_shape(client_for(researcher).delete("/api/v1/projects/cats/"), 405, "DELETE")


def test_malformed_json_answers_400_in_the_error_shape(researcher):
    response = client_for(researcher).generic("POST", "/api/v1/projects/", "{not json", content_type="application/json")

    assert_error_shape(response, 400, "JSON parse error")


def test_researcher_suspends_and_reinstates_a_member_who_then_may_work_again(researcher, annotator, project):
    client = client_for(researcher)

    suspended = client.post("/api/v1/projects/cats/members/anna/suspend/", {"reason": "failed gold"}, format="json")
    refused = client_for(annotator).post("/api/v1/projects/cats/work/next/", {"task_type": "pairwise"}, format="json")
    reinstated = client.post("/api/v1/projects/cats/members/anna/reinstate/")

    assert suspended.json()["status"] == "suspended" and suspended.json()["status_reason"] == "failed gold"
    assert refused.status_code == 403 and "suspended: failed gold" in refused.json()["message"]
    assert reinstated.json()["status"] == "active"
    assert client_for(annotator).post("/api/v1/projects/cats/members/anna/suspend/", {"reason": "x"},
                                      format="json").status_code == 403
