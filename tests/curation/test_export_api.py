"""Exports through the API and a real Celery worker: start, watch, cancel, download."""
import io
import tarfile

import pytest

from curation.models import DatasetExport
from tests.conftest import client_for, wait_for
from tests.curation.export_data import build_export_data


@pytest.mark.django_db
def test_only_the_projects_researchers_may_export(project, annotator, outsider):
    for user in (annotator, outsider):
        response = client_for(user).post("/api/v1/projects/cats/exports/", {"format": "pamela"}, format="json")
        assert response.status_code in (403, 404)
    assert DatasetExport.objects.count() == 0


@pytest.mark.django_db
def test_an_unknown_format_is_a_400_naming_it(project, researcher):
    response = client_for(researcher).post("/api/v1/projects/cats/exports/", {"format": "laion"}, format="json")

    assert response.status_code == 400 and "unknown format 'laion'" in str(response.json())


@pytest.mark.django_db
def test_local_destinations_outside_the_export_folder_are_refused(project, researcher):
    response = client_for(researcher).post("/api/v1/projects/cats/exports/",
                                           {"format": "pamela", "destination": "/etc/prefstudio"}, format="json")

    assert response.status_code == 400 and "must lie in this project's export folder" in str(response.json())


@pytest.mark.django_db
def test_a_queued_export_can_be_cancelled(project, researcher):
    client = client_for(researcher)
    created = client.post("/api/v1/projects/cats/exports/", {"format": "pamela"}, format="json").json()

    cancelled = client.post(f"/api/v1/exports/{created['id']}/cancel/").json()

    assert cancelled["status"] == "cancelled" and cancelled["message"] == "cancelled before it started"
    again = client.post(f"/api/v1/exports/{created['id']}/cancel/")
    assert again.status_code == 400 and "only a queued or running job can be cancelled" in str(again.json())


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_builds_an_export_started_through_the_api_and_it_downloads(project, researcher,
                                                                             celery_worker_process):
    data = build_export_data(project)
    client = client_for(researcher)

    created = client.post("/api/v1/projects/cats/exports/",
                          {"format": "pickapic", "filter_run": data.run.pk, "container": "parquet"}, format="json")
    assert created.status_code == 202, created.json()
    export_id = created.json()["id"]
    done = wait_for(lambda: (e := client.get(f"/api/v1/exports/{export_id}/").json())["status"]
                    in ("succeeded", "failed") and e, what="the export to finish")

    assert done["status"] == "succeeded", done["message"]
    assert done["rows_done"] == done["rows_total"] > 0
    shard = next(f for f in done["files"] if f["path"].endswith(".parquet"))
    response = client.get(shard["url"])
    assert response.status_code == 200 and b"".join(response.streaming_content)[:4] == b"PAR1"
    archive = client.get(f"/api/v1/exports/{export_id}/archive/")
    names = tarfile.open(fileobj=io.BytesIO(b"".join(archive.streaming_content))).getnames()
    assert f"cats-pickapic-{export_id}/manifest.json" in names and len(names) == len(done["files"])
    assert client.get(f"/api/v1/exports/{export_id}/files/../../etc/passwd").status_code == 404
