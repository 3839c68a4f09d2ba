"""Roles and data (issue 12, items 1-4): who may change admins, suspensions that outlive removal,
archived projects are read-only, judgments are never deleted, and the audit log."""
import pytest
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import ProtectedError
from django.test import Client

from annotation.models import (
    AspectScore, Comparison, Image, Membership, PreferenceJudgment, Project, Prompt, RemovedMemberSuspension, Source,
    TaskType, WorkUnit,
)
from annotation.services import items_hide, membership_set, project_update
from core.jobs import job_cancel
from core.models import AuditEntry
from tests.annotation.test_api import assert_error_shape
from tests.conftest import client_for
from tests.factories import ComparisonFactory, MembershipFactory, PromptFactory, UserFactory, prompts_with_all_pairs

pytestmark = pytest.mark.django_db
MANIFEST = b'{"prompt": "a cat", "image": "a.png"}\n'


@pytest.fixture
def admin_member(project):
    """`adam`, the admin of `cats` (granted by the platform, as a management command would)."""
    return membership_set(project=project, user=UserFactory(username="adam"), role="admin").user


def role_of(username, project):
    return Membership.objects.get(project=project, user__username=username).role


def preference(comparison, user, choice="a"):
    return PreferenceJudgment.objects.create(project=comparison.project, source=Source.HUMAN, annotator=user,
                                             comparison=comparison, choice=choice, left_image=comparison.image_a)


def aspect_score(image, user, value=3):
    return AspectScore.objects.create(project=image.project, source=Source.HUMAN, annotator=user, image=image,
                                      aspect="aesthetic", value=value)


def judgment_count():
    return PreferenceJudgment.objects.count() + AspectScore.objects.count()


def admin_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- 1. only admins change admins; a project keeps one ---------------------------------------

def test_a_researcher_may_not_demote_the_projects_admin(researcher, project, admin_member):
    response = client_for(researcher).patch("/api/v1/projects/cats/members/adam/", {"role": "annotator"},
                                            format="json")

    assert_error_shape(response, 403, "Only an admin of project 'cats'", "change the role of admin 'adam'")
    assert role_of("adam", project) == "admin"


def test_a_researcher_may_not_remove_the_projects_admin(researcher, project, admin_member):
    response = client_for(researcher).delete("/api/v1/projects/cats/members/adam/")

    assert_error_shape(response, 403, "remove admin 'adam'")
    assert role_of("adam", project) == "admin"


def test_a_project_admin_grants_admin_and_demotes_another_admin(project, admin_member):
    MembershipFactory(project=project, user=UserFactory(username="bea"), role="researcher")
    client = client_for(admin_member)

    granted = client.patch("/api/v1/projects/cats/members/bea/", {"role": "admin"}, format="json")
    demoted = client.patch("/api/v1/projects/cats/members/adam/", {"role": "researcher"}, format="json")

    assert granted.status_code == 200 and demoted.status_code == 200
    assert (role_of("bea", project), role_of("adam", project)) == ("admin", "researcher")


def test_the_last_admin_is_neither_demoted_nor_removed_even_by_a_platform_admin(project, admin_member,
                                                                                platform_admin):
    client = client_for(platform_admin)

    demoted = client.patch("/api/v1/projects/cats/members/adam/", {"role": "annotator"}, format="json")
    removed = client.delete("/api/v1/projects/cats/members/adam/")

    assert_error_shape(demoted, 400, "'adam' is the last admin of project 'cats'", "keeps at least one admin")
    assert_error_shape(removed, 400, "'adam' is the last admin of project 'cats'")
    assert role_of("adam", project) == "admin"


def test_membership_set_itself_refuses_a_researcher_granting_the_admin_role(researcher, project):
    bob = UserFactory(username="bob")

    with pytest.raises(PermissionDenied, match="grant the admin role"):
        membership_set(project=project, user=bob, role="admin", actor=researcher)
    assert not Membership.objects.filter(user=bob).exists()


def test_the_membership_admin_page_refuses_demoting_the_last_admin_with_a_message(project, admin_member,
                                                                                  platform_admin):
    membership = Membership.objects.get(project=project, user=admin_member)
    client = admin_client(platform_admin)

    response = client.post(f"/admin/annotation/membership/{membership.pk}/change/", {"role": "annotator"},
                           follow=True)

    assert response.status_code == 200
    assert "is the last admin of project" in response.content.decode()
    assert role_of("adam", project) == "admin"


def test_the_membership_admin_page_adds_a_member_through_the_services(project, platform_admin):
    bob = UserFactory(username="bob")

    response = admin_client(platform_admin).post("/admin/annotation/membership/add/", {
        "project": project.pk, "user": bob.pk, "role": "admin"})

    assert response.status_code == 302 and role_of("bob", project) == "admin"
    entry = AuditEntry.objects.get(action="member_added", target="bob")
    assert (entry.actor_username, entry.details) == ("ada", {"role": "admin", "suspended": False})


def test_the_project_admin_page_lists_members_without_editing_them(project, admin_member, platform_admin):
    client = admin_client(platform_admin)

    page = client.get(f"/admin/annotation/project/{project.pk}/change/").content.decode()

    assert "adam" in page and 'name="memberships-0-role"' not in page


# --- 2. a suspension follows the person --------------------------------------------------------

def test_a_suspended_member_removed_and_added_back_is_still_suspended(researcher, annotator, project):
    judged = preference(ComparisonFactory(prompt=PromptFactory(project=project)), annotator)
    client = client_for(researcher)
    client.post("/api/v1/projects/cats/members/anna/suspend/", {"reason": "failed gold"}, format="json")

    removed = client.delete("/api/v1/projects/cats/members/anna/")
    added = client.post("/api/v1/projects/cats/members/", {"username": "anna"}, format="json")
    work = client_for(annotator).post("/api/v1/projects/cats/work/next/", {"task_type": "pairwise"}, format="json")

    assert removed.status_code == 204
    assert added.status_code == 201
    assert (added.json()["status"], added.json()["status_reason"]) == ("suspended", "failed gold")
    assert_error_shape(work, 403, "suspended: failed gold")
    judged.refresh_from_db()
    assert judged.excluded_reason.startswith("annotator suspended")
    assert not RemovedMemberSuspension.objects.exists()  # back on the membership, kept once


def test_reinstating_a_member_who_came_back_unmarks_their_judgments(researcher, annotator, project):
    judged = preference(ComparisonFactory(prompt=PromptFactory(project=project)), annotator)
    client = client_for(researcher)
    client.post("/api/v1/projects/cats/members/anna/suspend/", {"reason": "failed gold"}, format="json")
    client.delete("/api/v1/projects/cats/members/anna/")
    client.post("/api/v1/projects/cats/members/", {"username": "anna"}, format="json")

    reinstated = client.post("/api/v1/projects/cats/members/anna/reinstate/")

    assert reinstated.json()["status"] == "active"
    judged.refresh_from_db()
    assert judged.excluded_reason == ""


def test_removing_a_member_in_good_standing_keeps_no_suspension(researcher, annotator, project):
    client = client_for(researcher)

    client.delete("/api/v1/projects/cats/members/anna/")
    added = client.post("/api/v1/projects/cats/members/", {"username": "anna"}, format="json")

    assert added.json()["status"] == "active"


# --- 3. an archived project is read-only ---------------------------------------------------------

@pytest.fixture
def work_project(project):
    prompts_with_all_pairs(project, prompts=2, images_per_prompt=3)
    return project_update(project=project, task_types=[TaskType.PAIRWISE, TaskType.ASPECT_SCORE], overlap=2,
                          gold_rate=0.0)


def test_an_archived_project_hands_out_and_stores_no_work(annotator, work_project, researcher):
    client = client_for(annotator)
    leased = client.post("/api/v1/projects/cats/work/next/", {"task_type": "pairwise", "count": 1},
                         format="json").json()["units"]
    client_for(researcher).patch("/api/v1/projects/cats/", {"is_archived": True}, format="json")

    more = client.post("/api/v1/projects/cats/work/next/", {"task_type": "pairwise"}, format="json")
    submitted = client.post("/api/v1/projects/cats/work/submit/", {"submissions": [
        {"idempotency_key": "archived-1", "assignment": leased[0]["assignment"], "choice": "left"}]}, format="json")

    body = assert_error_shape(more, 409, "Project 'cats' is archived and read-only")
    assert body["extra"]["code"] == "project_archived"
    assert_error_shape(submitted, 409, "archived")
    assert PreferenceJudgment.objects.count() == 0


def test_an_archived_project_takes_no_imports(researcher, project):
    project_update(project=project, is_archived=True)

    response = client_for(researcher).post("/api/v1/projects/cats/imports/", {
        "manifest": SimpleUploadedFile("m.jsonl", MANIFEST)}, format="multipart")

    assert_error_shape(response, 409, "archived")


def test_the_workspace_of_an_archived_project_says_so_instead_of_offering_work(annotator, work_project):
    project_update(project=work_project, is_archived=True)
    client = admin_client(annotator)

    page = client.get("/work/cats/pairwise/").content.decode()
    home = client.get("/").content.decode()

    assert "is archived" in page and 'data-testid="workspace"' not in page
    assert 'data-testid="archived-cats"' in home and "task-link-cats-pairwise" not in home


def test_unarchiving_opens_the_work_again(annotator, work_project, researcher):
    client_for(researcher).patch("/api/v1/projects/cats/", {"is_archived": True}, format="json")
    client_for(researcher).patch("/api/v1/projects/cats/", {"is_archived": False}, format="json")

    response = client_for(annotator).post("/api/v1/projects/cats/work/next/", {"task_type": "pairwise"}, format="json")

    assert response.status_code == 200 and response.json()["units"]


# --- 4. judgments are never deleted ---------------------------------------------------------------

@pytest.fixture
def judged(project, annotator):
    comparison = ComparisonFactory(prompt=PromptFactory(project=project))
    preference(comparison, annotator)
    aspect_score(comparison.image_b, annotator)
    return comparison


@pytest.mark.parametrize("what", ["image", "comparison", "prompt"])
def test_the_admin_refuses_to_delete_a_judged_item_and_keeps_every_judgment(judged, platform_admin, what):
    item = {"image": judged.image_a, "comparison": judged, "prompt": judged.prompt}[what]
    before = judgment_count()

    response = admin_client(platform_admin).post(f"/admin/annotation/{what}/{item.pk}/delete/", {"post": "yes"})

    page = response.content.decode()
    assert response.status_code == 200 and "Cannot delete" in page
    assert "1 preference judgments (raw judgments are never deleted)" in page
    assert "Hide it instead" in page
    assert judgment_count() == before and type(item).objects.filter(pk=item.pk).exists()


def test_the_admin_bulk_delete_of_judged_images_is_refused(judged, platform_admin):
    before = judgment_count()

    response = admin_client(platform_admin).post("/admin/annotation/image/", {
        "action": "delete_selected", "_selected_action": [judged.image_a_id, judged.image_b_id], "post": "yes"})

    assert response.status_code == 200 and "Cannot delete" in response.content.decode()
    assert judgment_count() == before and Image.objects.count() == 2


def test_the_admin_deletes_an_image_nobody_judged(project, platform_admin):
    lonely = ComparisonFactory(prompt=PromptFactory(project=project)).image_a

    response = admin_client(platform_admin).post(f"/admin/annotation/image/{lonely.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302 and not Image.objects.filter(pk=lonely.pk).exists()


def test_deleting_a_judged_image_in_code_is_refused_by_the_database_schema(judged):
    with pytest.raises(ProtectedError):
        judged.image_b.delete()
    with pytest.raises(ProtectedError):
        judged.delete()
    assert judgment_count() == 2


def test_judgments_have_no_delete_in_the_admin(judged, platform_admin):
    judgment = PreferenceJudgment.objects.get()

    response = admin_client(platform_admin).post(f"/admin/annotation/preferencejudgment/{judgment.pk}/delete/",
                                                 {"post": "yes"})

    assert response.status_code == 403 and PreferenceJudgment.objects.filter(pk=judgment.pk).exists()


def test_hiding_a_judged_image_keeps_it_and_hands_out_no_more_work_for_it(annotator, work_project, platform_admin):
    image = Image.objects.filter(project=work_project).first()
    aspect_score(image, annotator)
    admin_client(platform_admin).post("/admin/annotation/image/", {"action": "hide", "_selected_action": [image.pk]})

    leased = [unit for task_type in ("pairwise", "aspect_score") for unit in client_for(annotator).post(
        "/api/v1/projects/cats/work/next/", {"task_type": task_type, "count": 10}, format="json").json()["units"]]

    image.refresh_from_db()
    assert image.hidden_at is not None and AspectScore.objects.filter(image=image).exists()
    hidden_units = set(WorkUnit.objects.filter(image=image).values_list("id", flat=True)) | set(
        WorkUnit.objects.filter(comparison__in=Comparison.objects.filter(hidden_at__isnull=False))
        .values_list("id", flat=True))
    assert len(hidden_units) == 3  # its aspect-score unit and its two pairs
    assert leased and not {unit["unit"] for unit in leased} & hidden_units


def test_showing_a_hidden_prompt_again_brings_back_its_images_and_pairs(project):
    prompt = ComparisonFactory(prompt=PromptFactory(project=project)).prompt
    items_hide(items=Prompt.objects.filter(pk=prompt.pk))
    hidden = (Image.objects.filter(hidden_at__isnull=False).count(), Comparison.objects.filter(hidden_at__isnull=False).count())

    items_hide(items=Prompt.objects.filter(pk=prompt.pk), hidden=False)

    assert hidden == (2, 1)
    assert not Image.objects.filter(hidden_at__isnull=False).exists()
    assert not Comparison.objects.filter(hidden_at__isnull=False).exists()


def test_the_admin_refuses_the_plain_delete_of_a_project_with_judgments(judged, project, platform_admin):
    before = judgment_count()

    response = admin_client(platform_admin).post(f"/admin/annotation/project/{project.pk}/delete/", {"post": "yes"})

    page = response.content.decode()
    assert response.status_code == 200 and "Cannot delete" in page and "Delete with its judgments" in page
    assert judgment_count() == before and Project.objects.filter(pk=project.pk).exists()


def test_a_wrong_slug_deletes_no_project(judged, project, platform_admin):
    response = admin_client(platform_admin).post(
        f"/admin/annotation/project/{project.pk}/delete-with-judgments/", {"confirmation": "dogs"})

    assert response.status_code == 200 and "type the project&#x27;s slug &#x27;cats&#x27;" in response.content.decode()
    assert Project.objects.filter(pk=project.pk).exists() and judgment_count() == 2


def test_staff_who_are_not_superusers_may_not_delete_a_project_with_judgments(judged, project):
    staff = UserFactory(username="sam", is_staff=True)

    response = admin_client(staff).post(f"/admin/annotation/project/{project.pk}/delete-with-judgments/",
                                        {"confirmation": "cats"})

    assert response.status_code == 403 and Project.objects.filter(pk=project.pk).exists()


def test_a_superuser_deletes_a_project_with_its_judgments_by_typing_its_slug_and_the_audit_log_keeps_it(
        judged, project, platform_admin):
    from curation.models import DatasetExport, FilterRun

    other = ComparisonFactory(prompt=PromptFactory(project=Project.objects.create(slug="dogs", name="Dogs")))
    preference(other, UserFactory(username="dora"))
    run = FilterRun.objects.create(project=project, name="first", version=1, rules={})
    DatasetExport.objects.create(project=project, filter_run=run, format="pamela", container="jsonl")  # protects run
    project_id = project.pk

    response = admin_client(platform_admin).post(
        f"/admin/annotation/project/{project_id}/delete-with-judgments/", {"confirmation": "cats"})

    assert response.status_code == 302
    assert not Project.objects.filter(pk=project_id).exists()
    assert list(PreferenceJudgment.objects.values_list("comparison_id", flat=True)) == [other.pk]
    entry = AuditEntry.objects.get(action="deleted")
    assert (entry.project_ref, entry.project_slug, entry.actor_username) == (project_id, "cats", "ada")
    assert entry.details["judgments"] == {"preference judgments": 1, "aspect scores": 1, "personal ratings": 0,
                                          "artifact flags": 0}


# --- the audit log ---------------------------------------------------------------------------------

def test_the_audit_log_shows_its_admins_who_changed_roles_and_standing(researcher, annotator, project,
                                                                      admin_member):
    client = client_for(admin_member)
    client.patch("/api/v1/projects/cats/members/anna/", {"role": "researcher"}, format="json")
    client.post("/api/v1/projects/cats/members/anna/suspend/", {"reason": "spam"}, format="json")
    client.post("/api/v1/projects/cats/members/anna/reinstate/")
    client.delete("/api/v1/projects/cats/members/anna/")
    client.patch("/api/v1/projects/cats/", {"is_archived": True}, format="json")

    body = client.get("/api/v1/projects/cats/audit/?page_size=5").json()

    rows = [(e["action"], e["actor"], e["target"]) for e in body["results"]]
    assert rows == [("archived", "adam", "project cats"), ("member_removed", "adam", "anna"),
                    ("reinstated", "adam", "anna"), ("suspended", "adam", "anna"), ("role_changed", "adam", "anna")]
    assert body["results"][3]["details"] == {"reason": "spam"} and body["next"]


def test_the_audit_log_is_for_the_projects_admins_only(researcher, annotator, project):
    assert_error_shape(client_for(researcher).get("/api/v1/projects/cats/audit/"), 403, "for its admins")
    assert_error_shape(client_for(annotator).get("/api/v1/projects/cats/audit/"), 403)


def test_starting_and_cancelling_an_import_job_is_recorded_with_who_did_it(researcher, project):
    job = client_for(researcher).post("/api/v1/projects/cats/imports/", {
        "manifest": SimpleUploadedFile("m.jsonl", MANIFEST)}, format="multipart").json()
    client_for(researcher).post(f"/api/v1/imports/{job['id']}/cancel/")

    entries = AuditEntry.objects.filter(project_ref=project.pk, action__startswith="job_").order_by("id")

    assert [(e.action, e.actor_username, e.target) for e in entries] == [
        ("job_started", "rita", f"import job {job['id']}"), ("job_cancelled", "rita", f"import job {job['id']}")]


def test_filter_runs_and_exports_record_their_start(researcher, project):
    from curation.exports.services import dataset_export_create
    from curation.services import filter_run_create

    run = filter_run_create(project=project, name="first", rules=None, created_by=researcher)
    export = dataset_export_create(project=project, format="pamela", created_by=researcher, enqueue=False)
    job_cancel(job=run, actor=researcher)

    assert [(e.action, e.target) for e in AuditEntry.objects.filter(action__startswith="job_").order_by("id")] == [
        ("job_started", f"filter run {run.pk}"), ("job_started", f"export {export.pk}"),
        ("job_cancelled", f"filter run {run.pk}")]


def test_the_audit_log_is_read_only_in_the_django_admin(project, platform_admin):
    entry = AuditEntry.objects.get(action="member_added")
    client = admin_client(platform_admin)

    shown = client.get(f"/admin/core/auditentry/{entry.pk}/change/")
    deleted = client.post(f"/admin/core/auditentry/{entry.pk}/delete/", {"post": "yes"})

    assert shown.status_code == 200 and 'name="target"' not in shown.content.decode()
    assert deleted.status_code == 403 and AuditEntry.objects.filter(pk=entry.pk).exists()
