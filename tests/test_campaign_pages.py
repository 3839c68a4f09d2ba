"""The campaign pages (frontend/views_projects.py and the home page): who may open them, and what
their forms do."""
import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from annotation.models import ImportJob, ImportLineError, Membership, Project, WorkUnit
from annotation.services import import_job_run
from tests.factories import UserFactory, prompts_with_all_pairs

pytestmark = pytest.mark.django_db


def client_of(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def project_form(**overrides) -> dict:
    form = {"slug": "dogs", "name": "Dogs", "task_types": ["pairwise", "aspect_score"],
            "aspect_key": ["aesthetic", ""], "aspect_label": ["Aesthetic", ""],
            "aspect_question": ["How pleasing is it?", ""], "score_scale": "7", "rating_scale": "10",
            "overlap": "2", "gold_rate": "0.1", "instructions": "# Rules\n\nJudge **carefully**."}
    form.update(overrides)
    return form


@pytest.fixture
def job(project, researcher):
    job = ImportJob.objects.create(project=project, created_by=researcher, manifest_key="imports/x.jsonl",
                                   lines_total=3, status="succeeded")
    ImportLineError.objects.bulk_create([
        ImportLineError(job=job, line=2, field="image", message="file not found: b.png"),
        ImportLineError(job=job, line=3, field="prompt", message="=HYPERLINK(\"x\") required"),
    ])
    return job


# --- who may ------------------------------------------------------------------------------

def _urls(project, job):
    return [
        ("get", f"/projects/{project.slug}/settings/"),
        ("post", f"/projects/{project.slug}/settings/"),
        ("post", f"/projects/{project.slug}/archive/"),
        ("get", f"/projects/{project.slug}/imports/"),
        ("post", f"/projects/{project.slug}/imports/"),
        ("post", f"/projects/{project.slug}/work-units/open/"),
        ("get", f"/imports/{job.pk}/"),
        ("get", f"/imports/{job.pk}/rejected.csv"),
    ]


def test_an_annotator_of_the_project_is_refused_every_campaign_page(annotator, project, job):
    client = client_of(annotator)
    for method, url in _urls(project, job):
        status = getattr(client, method)(url, {"archived": "1"} if "archive" in url else {}).status_code
        assert status in (403, 404), (method, url, status)
    assert client.get("/projects/new/").status_code == 403
    project.refresh_from_db()
    assert not project.is_archived


def test_an_outsider_is_told_the_project_does_not_exist(outsider, project, job):
    client = client_of(outsider)
    for method, url in _urls(project, job):
        assert getattr(client, method)(url).status_code == 404, (method, url)


def test_someone_signed_out_is_sent_to_sign_in(project, job):
    for method, url in [*_urls(project, job), ("get", "/projects/new/")]:
        response = getattr(client_of(None), method)(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], (method, url)


def test_a_researcher_of_the_project_may_open_every_campaign_page(researcher, project, job):
    client = client_of(researcher)
    for url in (f"/projects/{project.slug}/settings/", f"/projects/{project.slug}/imports/", f"/imports/{job.pk}/",
                f"/imports/{job.pk}/rejected.csv", "/projects/new/"):
        assert client.get(url).status_code == 200, url


def test_a_member_without_the_researcher_permission_may_not_create_a_project(annotator):
    response = client_of(annotator).post("/projects/new/", project_form())
    assert response.status_code == 403
    assert not Project.objects.filter(slug="dogs").exists()


# --- projects -----------------------------------------------------------------------------

def test_the_form_creates_a_project_with_every_setting(researcher):
    response = client_of(researcher).post("/projects/new/", project_form())
    assert response.status_code == 302 and response["Location"] == "/projects/dogs/imports/"
    project = Project.objects.get(slug="dogs")
    assert project.task_types == ["pairwise", "aspect_score"]
    assert project.aspects == [{"key": "aesthetic", "label": "Aesthetic", "question": "How pleasing is it?"}]
    assert (project.score_scale, project.rating_scale, project.overlap, project.gold_rate) == (7, 10, 2, 0.1)
    assert Membership.objects.get(project=project, user=researcher).role == "researcher"


def test_a_bad_form_is_shown_again_with_the_serializers_errors_beside_the_fields(researcher, project):
    response = client_of(researcher).post("/projects/new/", project_form(
        slug="cats", task_types=[], overlap="0", aspect_key=["overall"], aspect_label=["x"], aspect_question=[""]))
    assert response.status_code == 400
    errors = response.context["errors"]
    assert set(errors) >= {"task_types", "overlap"}
    assert "Dogs" in response.content.decode()  # what was typed stays
    response = client_of(researcher).post("/projects/new/", project_form(slug="cats"))
    assert "already exists" in response.context["errors"]["slug"]
    response = client_of(researcher).post("/projects/new/", project_form(
        aspect_key=["overall"], aspect_label=["x"], aspect_question=[""]))
    assert "reserved" in response.context["errors"]["aspects"]


def test_a_row_with_a_label_and_no_key_gets_a_key_from_its_label(researcher):
    client_of(researcher).post("/projects/new/", project_form(aspect_key=[""], aspect_label=["Colour harmony"],
                                                            aspect_question=[""]))
    assert Project.objects.get(slug="dogs").aspect_keys == ["colour_harmony"]


def test_editing_saves_the_settings_and_opens_units_for_a_new_task_type(researcher, project):
    prompts_with_all_pairs(project, prompts=1, images_per_prompt=2)
    form = project_form(task_types=["pairwise", "artifact_flag"], name="Cats, again")
    form.pop("slug")
    response = client_of(researcher).post(f"/projects/{project.slug}/settings/", form)
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.name == "Cats, again" and project.task_types == ["pairwise", "artifact_flag"]
    assert WorkUnit.objects.filter(project=project, task_type="artifact_flag").count() == 2


def test_the_slug_cannot_change_on_edit(researcher, project):
    form = project_form(slug="renamed")
    client_of(researcher).post(f"/projects/{project.slug}/settings/", form)
    assert Project.objects.filter(slug="cats").exists() and not Project.objects.filter(slug="renamed").exists()


def test_instructions_are_rendered_from_markdown_without_script(researcher, project):
    project.instructions = "**Look closely** <script>alert(1)</script> [bad](javascript:alert(1))"
    project.save()
    html = client_of(researcher).get(f"/projects/{project.slug}/settings/").content.decode()
    preview = html.split('data-testid="instructions-preview">', 1)[1].split("</div>", 1)[0]
    assert "<strong>Look closely</strong>" in preview
    assert "<script>" not in preview and "javascript:" not in preview.replace("[bad](javascript:alert(1))", "")


def test_the_workspace_shows_the_instructions_as_sanitised_markdown(annotator, project):
    project.instructions = "# Rules\n\n<img src=x onerror=alert(1)> *be fair*"
    project.save()
    html = client_of(annotator).get(f"/work/{project.slug}/pairwise/").content.decode()
    assert "<h1>Rules</h1>" in html and "<em>be fair</em>" in html
    assert "<img src=x" not in html


def test_archiving_and_unarchiving_from_the_project_page(researcher, project):
    client = client_of(researcher)
    assert client.post(f"/projects/{project.slug}/archive/", {"archived": "1"}).status_code == 302
    project.refresh_from_db()
    assert project.is_archived
    page = client.get(f"/projects/{project.slug}/settings/").content.decode()
    assert 'data-testid="unarchive"' in page
    client.post(f"/projects/{project.slug}/archive/", {"archived": "0"})
    project.refresh_from_db()
    assert not project.is_archived


def test_archiving_needs_a_post(researcher, project):
    assert client_of(researcher).get(f"/projects/{project.slug}/archive/").status_code == 405


# --- imports ------------------------------------------------------------------------------

def test_a_manifest_upload_queues_an_import_and_shows_its_page(researcher, project):
    manifest = SimpleUploadedFile("m.jsonl", b'{"prompt": "a cat", "image": "https://example.org/a.png"}\n')
    response = client_of(researcher).post(f"/projects/{project.slug}/imports/", {"manifest": manifest})
    job = ImportJob.objects.get(project=project)
    assert response.status_code == 302 and response["Location"] == f"/imports/{job.pk}/"
    assert job.lines_total == 1 and job.images_root == ""


def test_a_server_folder_outside_the_allowed_roots_is_refused_in_the_form(researcher, project, settings, tmp_path):
    settings.IMPORT_LOCAL_ROOTS = [str(tmp_path)]
    manifest = SimpleUploadedFile("m.jsonl", b'{"prompt": "a cat", "image": "a.png"}\n')
    response = client_of(researcher).post(f"/projects/{project.slug}/imports/", {
        "manifest": manifest, "images_root_base": str(tmp_path), "images_root_below": "../.."})
    assert response.status_code == 400
    assert "IMPORT_LOCAL_ROOTS" in response.context["errors"]["images_root"]
    assert not ImportJob.objects.exists()


def test_a_root_not_in_the_list_is_ignored_rather_than_used(researcher, project, settings, tmp_path):
    settings.IMPORT_LOCAL_ROOTS = [str(tmp_path / "allowed")]
    manifest = SimpleUploadedFile("m.jsonl", b'{"prompt": "a cat", "image": "a.png"}\n')
    client_of(researcher).post(f"/projects/{project.slug}/imports/", {"manifest": manifest, "images_root_base": "/etc"})
    assert ImportJob.objects.get().images_root == ""


def test_an_import_from_a_server_folder_imports_and_lists_its_rejected_lines(researcher, project, settings,
                                                                             images_dir):
    settings.IMPORT_LOCAL_ROOTS = [str(images_dir.parent)]
    manifest = (b'{"prompt": "a cat", "image": "a.png"}\n{"prompt": "a cat", "image": "b.png"}\n'
                b'{"prompt": "a cat", "image": "missing.png"}\nnot json\n')
    client = client_of(researcher)
    client.post(f"/projects/{project.slug}/imports/", {
        "manifest": SimpleUploadedFile("m.jsonl", manifest), "images_root_base": str(images_dir.parent),
        "images_root_below": images_dir.name})
    job = ImportJob.objects.get()
    assert job.images_root == f"{images_dir.parent}/{images_dir.name}"
    import_job_run(job_id=job.pk)  # what the worker does
    job.refresh_from_db()
    assert (job.status, job.images_created, job.rejected) == ("succeeded", 2, 2)
    page = client.get(f"/imports/{job.pk}/").content.decode()
    assert 'data-testid="rejected-line-3"' in page and 'data-testid="rejected-line-4"' in page
    assert "file not found" in page


def test_the_empty_manifest_is_refused_in_the_form(researcher, project):
    response = client_of(researcher).post(f"/projects/{project.slug}/imports/",
                                          {"manifest": SimpleUploadedFile("m.jsonl", b"")})
    assert response.status_code == 400 and response.context["errors"]["manifest"]


def test_an_archived_project_refuses_an_upload_in_the_form(researcher, project):
    project.is_archived = True
    project.save()
    response = client_of(researcher).post(f"/projects/{project.slug}/imports/",
                                          {"manifest": SimpleUploadedFile("m.jsonl", b'{"prompt": "x"}\n')})
    assert response.status_code == 400 and "archived" in response.context["errors"]["form"]


def test_rejected_lines_are_paginated(researcher, project, job):
    ImportLineError.objects.bulk_create([ImportLineError(job=job, line=10 + i, field="image", message="bad")
                                         for i in range(60)])
    client = client_of(researcher)
    first = client.get(f"/imports/{job.pk}/")
    assert len(first.context["rejected"]) == 50 and 'data-testid="rejected-next"' in first.content.decode()
    second = client.get(f"/imports/{job.pk}/?page=2")
    assert len(second.context["rejected"]) == 12


def test_rejected_lines_download_as_csv_with_formulas_defused(researcher, job):
    response = client_of(researcher).get(f"/imports/{job.pk}/rejected.csv")
    assert response["Content-Type"].startswith("text/csv")
    assert f"import-{job.pk}-rejected.csv" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows == [["line", "field", "reason"], ["2", "image", "file not found: b.png"],
                    ["3", "prompt", "'=HYPERLINK(\"x\") required"]]


def test_opening_work_units_creates_the_missing_ones(researcher, project):
    prompts_with_all_pairs(project, prompts=1, images_per_prompt=3)
    Project.objects.filter(pk=project.pk).update(task_types=["pairwise", "aspect_score"])
    response = client_of(researcher).post(f"/projects/{project.slug}/work-units/open/", follow=True)
    assert WorkUnit.objects.filter(project=project, task_type="pairwise").count() == 3
    assert WorkUnit.objects.filter(project=project, task_type="aspect_score").count() == 3
    assert "6 new work units opened" in response.content.decode()


# --- the home page ------------------------------------------------------------------------

def test_an_annotator_sees_units_left_for_them_and_no_management(annotator, project):
    from annotation.services import work_units_open

    prompts_with_all_pairs(project, prompts=2, images_per_prompt=2)
    work_units_open(project=project)
    response = client_of(annotator).get("/")
    html = response.content.decode()
    assert response.context["projects"][0]["tasks"][0]["left_in_project"] == 2
    assert 'data-testid="left-cats-pairwise">2<' in html and 'data-testid="today-cats-pairwise">0<' in html
    assert 'data-testid="new-project"' not in html and 'data-testid="settings-link-cats"' not in html
    assert 'data-testid="members-link-cats"' not in html and 'data-testid="join-with-code"' in html


def test_a_researcher_sees_progress_latest_run_and_export_and_new_project(researcher, project):
    from curation.models import DatasetExport, FilterRun

    FilterRun.objects.create(project=project, name="strict", version=1, rules={}, status="succeeded")
    newer = FilterRun.objects.create(project=project, name="strict", version=2, rules={}, status="running")
    export = DatasetExport.objects.create(project=project, format="trl", container="jsonl", destination="x")
    html = client_of(researcher).get("/").content.decode()
    assert 'data-testid="new-project"' in html
    assert f'href="/filter-runs/{newer.pk}/" data-testid="latest-run-cats">strict v2<' in html
    assert f'href="/exports/{export.pk}/" data-testid="latest-export-cats"' in html
    assert "0 of 0 units complete" in html
    assert 'href="/projects/cats/members/"' in html and 'data-testid="members-link-cats"' in html


def test_someone_with_no_project_and_no_permission_sees_no_new_project_button(db):
    html = client_of(UserFactory(username="nobody")).get("/").content.decode()
    assert 'data-testid="new-project"' not in html and "not a member of any project" in html


def test_a_manifest_over_the_size_limit_is_refused_in_the_form_and_not_stored(researcher, project, settings):
    settings.IMPORT_MANIFEST_MAX_BYTES = 100
    manifest = SimpleUploadedFile("m.jsonl", b'{"prompt": "a cat", "image": "https://example.org/a.png"}\n' * 5)
    response = client_of(researcher).post(f"/projects/{project.slug}/imports/", {"manifest": manifest})
    assert response.status_code == 400 and "IMPORT_MANIFEST_MAX_BYTES" in response.context["errors"]["manifest"]
    assert not ImportJob.objects.exists()


def test_the_upload_form_is_checked_for_its_csrf_token(researcher, project):
    client = Client(enforce_csrf_checks=True)
    client.force_login(researcher)
    manifest = SimpleUploadedFile("m.jsonl", b'{"prompt": "a cat", "image": "https://example.org/a.png"}\n')
    assert client.post(f"/projects/{project.slug}/imports/", {"manifest": manifest}).status_code == 403
    assert not ImportJob.objects.exists()


def test_the_lease_length_set_in_the_form_is_how_long_a_unit_stays_reserved(researcher, project, annotator):
    from datetime import timedelta

    from django.utils import timezone

    from annotation.assignment import assignments_lease_next
    from annotation.services import work_units_open

    form = project_form(lease_minutes="7")
    form.pop("slug")
    client_of(researcher).post(f"/projects/{project.slug}/settings/", form)
    project.refresh_from_db()
    assert project.lease_minutes == 7
    prompts_with_all_pairs(project, prompts=1, images_per_prompt=2)
    work_units_open(project=project)
    membership = Membership.objects.select_related("project", "user").get(project=project, user=annotator)
    [lease] = assignments_lease_next(membership=membership, task_type="pairwise", count=1)
    assert abs(lease.expires_at - timezone.now() - timedelta(minutes=7)) < timedelta(seconds=30)

    form["lease_minutes"] = ""  # blank: back to the platform's WORK_LEASE_MINUTES
    client_of(researcher).post(f"/projects/{project.slug}/settings/", form)
    project.refresh_from_db()
    assert project.lease_minutes is None


def test_a_lease_length_past_a_day_is_refused_beside_its_field(researcher, project):
    form = project_form(lease_minutes="5000")
    form.pop("slug")
    response = client_of(researcher).post(f"/projects/{project.slug}/settings/", form)
    assert response.status_code == 400 and "1440" in response.context["errors"]["lease_minutes"]


def test_an_import_from_an_s3_prefix_reads_relative_paths_as_keys_under_it(researcher, project, s3_settings):
    from tests.conftest import image_bytes

    client, bucket = s3_settings.client, s3_settings.bucket
    client.put_object(Bucket=bucket, Key="batch/7/one.png", Body=image_bytes(color=(1, 2, 3)))
    client.put_object(Bucket=bucket, Key="batch/7/two.png", Body=image_bytes(color=(9, 8, 7)))
    client.put_object(Bucket=bucket, Key="secret.png", Body=image_bytes(color=(5, 5, 5)))
    manifest = (b'{"prompt": "p", "image": "one.png"}\n{"prompt": "p", "image": "two.png"}\n'
                b'{"prompt": "p", "image": "../../secret.png"}\n')
    client_of(researcher).post(f"/projects/{project.slug}/imports/", {
        "manifest": SimpleUploadedFile("m.jsonl", manifest), "s3_prefix": f"s3://{bucket}/batch/7"})
    job = ImportJob.objects.get()
    assert job.images_root == f"s3://{bucket}/batch/7"
    import_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert (job.images_created, job.rejected) == (2, 1)
    assert "outside the S3 prefix" in ImportLineError.objects.get(job=job).message


def test_a_malformed_s3_prefix_or_one_beside_a_server_folder_is_refused(researcher, project, settings, tmp_path):
    settings.IMPORT_LOCAL_ROOTS = [str(tmp_path)]
    client = client_of(researcher)
    for form in ({"s3_prefix": "s3://Bad_Bucket/x"}, {"s3_prefix": "s3://bucket/../x"},
                 {"s3_prefix": "s3://bucket/x", "images_root_base": str(tmp_path)}):
        response = client.post(f"/projects/{project.slug}/imports/",
                               {"manifest": SimpleUploadedFile("m.jsonl", b'{"prompt": "p", "image": "a.png"}\n'),
                                **form})
        assert response.status_code == 400 and response.context["errors"]["images_root"], form
    assert not ImportJob.objects.exists()


def test_the_api_reads_and_sets_the_lease_length_too(researcher, project):
    from tests.conftest import client_for

    answer = client_for(researcher).patch(f"/api/v1/projects/{project.slug}/", {"lease_minutes": 12}, format="json")
    assert answer.status_code == 200 and answer.json()["lease_minutes"] == 12
    project.refresh_from_db()
    assert project.lease_minutes == 12
