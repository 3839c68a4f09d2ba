"""An export claims its destination when it is asked for: no two live exports share a folder or an
S3 prefix, a place that already holds files is refused at once, and local folders stay inside the
project's own folder under EXPORT_ROOT."""
import threading
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from core.jobs import job_cancel
from curation.exports import services
from curation.exports.services import dataset_export_cleanup, dataset_export_create
from curation.models import DatasetExport
from tests.conftest import client_for


@pytest.fixture(autouse=True)
def export_root(settings, tmp_path) -> Path:
    settings.EXPORT_ROOT = str(tmp_path / "exports")
    return (tmp_path / "exports").resolve()


def request_export(project, destination=""):
    return dataset_export_create(project=project, format="pamela", destination=destination, enqueue=False)


def race(project, destination, monkeypatch) -> list:
    """Two requests for `destination` at once, both about to look for a claim on it when they
    are let go together. Returns what each got: an export, or the error."""
    both_looking = threading.Barrier(2, timeout=20)
    real_key = services.destination_key

    def key_once_both_are_here(parsed):
        both_looking.wait()
        return real_key(parsed)

    monkeypatch.setattr(services, "destination_key", key_once_both_are_here)
    outcomes = []

    def ask():
        try:
            outcomes.append(request_export(project, destination))
        except ValidationError as exc:
            outcomes.append(exc)
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


needs_postgresql = pytest.mark.skipif(connection.vendor != "postgresql",
                                      reason="concurrent writers need PostgreSQL (SQLite locks the whole file)")


@needs_postgresql
@pytest.mark.django_db(transaction=True)
def test_two_exports_racing_for_one_folder_claim_it_once(project, monkeypatch, export_root):
    outcomes = race(project, "race", monkeypatch)

    refused = [o for o in outcomes if isinstance(o, ValidationError)]
    assert len(outcomes) == 2 and len(refused) == 1 and list(refused[0].message_dict) == ["destination"]
    assert list(DatasetExport.objects.values_list("destination", flat=True)) == [str(export_root / "cats" / "race")]


@needs_postgresql
@pytest.mark.django_db(transaction=True)
def test_two_exports_racing_for_one_s3_prefix_claim_it_once(project, monkeypatch, s3_settings):
    outcomes = race(project, f"s3://{s3_settings.bucket}/datasets/race", monkeypatch)

    refused = [o for o in outcomes if isinstance(o, ValidationError)]
    assert len(outcomes) == 2 and len(refused) == 1 and list(refused[0].message_dict) == ["destination"]
    assert list(DatasetExport.objects.values_list("destination_key", flat=True)) == [
        f"s3://{s3_settings.bucket}/datasets/race"]


@pytest.mark.django_db
def test_an_export_to_a_claimed_destination_is_a_400_naming_the_export_that_holds_it(project, researcher):
    client = client_for(researcher)
    first = client.post("/api/v1/projects/cats/exports/", {"format": "pamela", "destination": "v1"}, format="json")

    second = client.post("/api/v1/projects/cats/exports/", {"format": "pamela", "destination": "v1"}, format="json")

    assert first.status_code == 202 and second.status_code == 400
    assert f"is claimed by export {first.json()['id']}" in second.json()["message"]
    assert list(second.json()["extra"]["fields"]) == ["destination"]


@pytest.mark.django_db
@pytest.mark.parametrize("end", ["failed", "cancelled"])
def test_an_export_that_failed_or_was_cancelled_releases_its_destination(project, end):
    first = request_export(project, "v1")
    if end == "cancelled":
        job_cancel(job=first)
    else:
        DatasetExport.objects.filter(pk=first.pk).update(status="failed")

    second = request_export(project, "v1")

    assert second.destination_key == first.destination_key


@pytest.mark.django_db
def test_cleanup_of_a_cancelled_s3_export_spares_the_export_that_claimed_its_prefix_since(project, s3_settings):
    client, bucket = s3_settings.client, s3_settings.bucket
    cancelled = request_export(project, f"s3://{bucket}/datasets/v1")  # its worker died before uploading
    DatasetExport.objects.filter(pk=cancelled.pk).update(status="running", attempts=1, heartbeat_at=None)
    job_cancel(job=cancelled)
    successor = request_export(project, f"s3://{bucket}/datasets/v1")
    client.put_object(Bucket=bucket, Key="datasets/v1/manifest.json", Body=b"{}")  # what the successor published

    dataset_export_cleanup(export_id=cancelled.pk)  # the cancelled export's cleanup task, run late

    assert successor.destination_key == cancelled.destination_key
    assert client.list_objects_v2(Bucket=bucket, Prefix="datasets/v1/")["KeyCount"] == 1


@pytest.mark.django_db
def test_a_local_destination_that_holds_files_is_a_400_when_asked_for(project, researcher, export_root):
    (export_root / "cats" / "v1").mkdir(parents=True)
    (export_root / "cats" / "v1" / "notes.txt").write_text("keep me")

    response = client_for(researcher).post("/api/v1/projects/cats/exports/", {"format": "pamela", "destination": "v1"},
                                           format="json")

    assert response.status_code == 400 and "already exists and is not an empty folder" in response.json()["message"]
    assert not DatasetExport.objects.exists()


@pytest.mark.django_db
def test_an_s3_prefix_that_holds_objects_is_a_400_when_asked_for(project, researcher, s3_settings):
    s3_settings.client.put_object(Bucket=s3_settings.bucket, Key="datasets/v1/notes.txt", Body=b"keep me")

    response = client_for(researcher).post(
        "/api/v1/projects/cats/exports/", {"format": "pamela", "destination": f"s3://{s3_settings.bucket}/datasets/v1"},
        format="json")

    assert response.status_code == 400 and "already holds objects" in response.json()["message"]
    assert not DatasetExport.objects.exists()


@pytest.mark.django_db
def test_a_researcher_of_another_project_may_not_export_into_this_projects_folder(project, outsider, export_root):
    response = client_for(outsider).post("/api/v1/projects/other/exports/",
                                         {"format": "pamela", "destination": str(export_root / "cats" / "v1")},
                                         format="json")

    assert response.status_code == 400 and "must lie in this project's export folder" in response.json()["message"]


@pytest.mark.django_db
def test_a_relative_destination_lands_in_the_projects_own_folder(outsider, export_root):
    response = client_for(outsider).post("/api/v1/projects/other/exports/",
                                         {"format": "pamela", "destination": "mine/v1"}, format="json")

    assert response.status_code == 202 and response.json()["destination"] == str(export_root / "other" / "mine" / "v1")


@pytest.mark.django_db
def test_a_blank_destination_gets_a_new_folder_named_after_the_export(project, export_root):
    export = request_export(project)

    assert export.destination == str(export_root / "cats" / f"{export.pk:06d}-pamela-parquet")


@pytest.mark.django_db
def test_a_blank_destination_whose_folder_is_occupied_gets_a_numbered_one(project, export_root):
    earlier = request_export(project)
    occupied = export_root / "cats" / f"{earlier.pk + 1:06d}-pamela-parquet"
    occupied.mkdir(parents=True)
    (occupied / "notes.txt").write_text("keep me")

    export = request_export(project)

    assert export.pk == earlier.pk + 1  # the folder named after it was the occupied one
    assert export.destination == f"{occupied}-2" and (occupied / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("first, second", [("outer", "outer/v1"), ("outer/v1", "outer")])
def test_a_destination_inside_or_around_a_claimed_one_is_refused(project, export_root, first, second):
    held = request_export(project, first)

    with pytest.raises(ValidationError, match=f"overlaps export {held.pk}"):
        request_export(project, second)


def test_an_s3_prefix_inside_a_claimed_one_is_refused(project, s3_settings):
    held = request_export(project, f"s3://{s3_settings.bucket}/datasets")

    with pytest.raises(ValidationError, match=f"overlaps export {held.pk}"):
        request_export(project, f"s3://{s3_settings.bucket}/datasets/v1")
    assert request_export(project, f"s3://{s3_settings.bucket}/datasets-v2").destination_key.endswith("datasets-v2")
