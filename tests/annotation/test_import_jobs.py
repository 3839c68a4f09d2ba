"""Import jobs through the API, run by a real Celery worker process."""
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.models import Comparison, Image, ImportJob
from tests.conftest import client_for, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def manifest_file(lines):
    body = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    return SimpleUploadedFile("manifest.jsonl", body.encode(), content_type="application/jsonl")


def finished(client, job_id):
    body = client.get(f"/api/v1/imports/{job_id}/").json()
    return body if body["status"] in ("succeeded", "failed") else None


def test_import_job_runs_on_a_worker_and_reports_per_line_errors(celery_worker_process, researcher, project,
                                                                 images_dir, settings):
    settings.IMPORT_LOCAL_ROOTS = [str(images_dir.parent)]
    client = client_for(researcher)
    lines = [{"prompt": "two cats", "image": f"{n}.png"} for n in "abcd"] + ["{broken", {"prompt": "x", "image": "../no.png"}]

    created = client.post("/api/v1/projects/cats/imports/", {"manifest": manifest_file(lines), "images_root": str(images_dir)},
                          format="multipart")
    assert created.status_code == 202, created.content
    job = wait_for(lambda: finished(client, created.json()["id"]), what="import job to finish")
    errors = client.get(f"/api/v1/imports/{job['id']}/errors/").json()["results"]

    assert job["status"] == "succeeded", job
    assert (job["lines_total"], job["lines_done"], job["images_created"], job["rejected"]) == (6, 6, 4, 2)
    assert job["comparisons_created"] == 6
    assert [(e["line"], e["field"]) for e in errors] == [(5, ""), (6, "image")]
    assert "outside the images root" in errors[1]["message"]
    assert (Image.objects.count(), Comparison.objects.count()) == (4, 6)


def test_api_import_may_not_read_folders_outside_the_allowed_roots(researcher, project, images_dir, settings):
    settings.IMPORT_LOCAL_ROOTS = []
    response = client_for(researcher).post(
        "/api/v1/projects/cats/imports/",
        {"manifest": manifest_file([{"prompt": "p", "image": "a.png"}]), "images_root": str(images_dir)},
        format="multipart")

    assert response.status_code == 400
    assert "IMPORT_LOCAL_ROOTS" in response.json()["message"]
    assert ImportJob.objects.count() == 0


def test_api_import_without_a_root_refuses_local_paths_line_by_line(celery_worker_process, researcher, project):
    client = client_for(researcher)
    created = client.post("/api/v1/projects/cats/imports/",
                          {"manifest": manifest_file([{"prompt": "p", "image": "/etc/passwd"}])}, format="multipart")

    job = wait_for(lambda: finished(client, created.json()["id"]), what="import job to finish")
    errors = client.get(f"/api/v1/imports/{job['id']}/errors/").json()["results"]

    assert job["status"] == "succeeded" and job["rejected"] == 1
    assert "outside the images root" in errors[0]["message"]


def test_annotator_may_not_start_or_read_imports(annotator, researcher, project):
    job = ImportJob.objects.create(project=project, created_by=researcher, manifest_key="imports/x.jsonl")
    client = client_for(annotator)

    assert client.post("/api/v1/projects/cats/imports/", {"manifest": manifest_file(["{}"])},
                       format="multipart").status_code == 403
    assert client.get(f"/api/v1/imports/{job.id}/").status_code == 404


def test_empty_manifest_is_refused(researcher, project):
    response = client_for(researcher).post("/api/v1/projects/cats/imports/",
                                           {"manifest": SimpleUploadedFile("m.jsonl", b"\n\n")}, format="multipart")

    assert response.status_code == 400 and "manifest" in response.json()["message"]
