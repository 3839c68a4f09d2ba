"""Exports that cannot finish end in a clear failed (or cancelled) state, and leave no dataset that
looks complete: no destination folder, no manifest.json."""
import errno
import time

import pyarrow.parquet as pq
import pytest
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

from curation.exports.services import dataset_export_build, dataset_export_create
from curation.models import DatasetExport
from tests.curation.export_data import build_export_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def data(project):
    return build_export_data(project, prompts=3)


def build(data, destination, fmt="pickapic", **options):
    created = dataset_export_create(project=data.project, format=fmt, destination=str(destination),
                                    filter_run=data.run, options=options, anywhere=True, enqueue=False)
    return dataset_export_build(export_id=created.pk)


def nothing_published(tmp_path) -> bool:
    return not list(tmp_path.rglob("manifest.json")) and not list(tmp_path.glob(".*incomplete*"))


def test_an_unknown_format_is_refused_with_the_known_ones(data, tmp_path):
    with pytest.raises(ValidationError) as caught:
        dataset_export_create(project=data.project, format="laion", destination=str(tmp_path / "x"), anywhere=True)

    assert "unknown format 'laion'" in str(caught.value) and "pickapic" in str(caught.value)
    assert DatasetExport.objects.count() == 0


def test_unknown_options_and_out_of_range_values_name_the_option(data, tmp_path):
    with pytest.raises(ValidationError, match="unknown option"):
        dataset_export_create(project=data.project, format="pamela", destination=str(tmp_path / "x"),
                              options={"shuffle": True}, anywhere=True)
    with pytest.raises(ValidationError, match="unseen_people"):
        dataset_export_create(project=data.project, format="pamela", destination=str(tmp_path / "x"),
                              options={"unseen_people": 1.5}, anywhere=True)


def test_an_unknown_aspect_or_score_source_is_refused_before_anything_runs(data, tmp_path):
    with pytest.raises(ValidationError, match="aspect: 'colour' is not an aspect of this project"):
        dataset_export_create(project=data.project, format="pickapic", destination=str(tmp_path / "x"),
                              options={"rows": "judgments", "aspect": "colour"}, anywhere=True)
    with pytest.raises(ValidationError, match="source: no machine annotator named 'gpt-9'"):
        dataset_export_create(project=data.project, format="visionprefer", destination=str(tmp_path / "x"),
                              options={"source": "gpt-9"}, anywhere=True)
    assert DatasetExport.objects.count() == 0


def test_a_destination_without_write_permission_fails_with_a_clear_message(data):
    # Not even root may create folders in sysfs, so this holds on any machine.
    export = build(data, "/sys/prefstudio-export")

    assert export.status == "failed"
    assert "no permission to write the destination /sys/prefstudio-export" in export.message


def test_a_destination_that_already_holds_files_is_refused_when_the_export_is_asked_for(data, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("keep me")

    with pytest.raises(ValidationError, match="already exists and is not an empty folder"):
        build(data, tmp_path / "taken")

    assert (tmp_path / "taken" / "notes.txt").read_text() == "keep me" and DatasetExport.objects.count() == 0


def test_files_that_appear_in_the_destination_before_the_build_are_never_overwritten(data, tmp_path):
    created = dataset_export_create(project=data.project, format="pickapic", destination=str(tmp_path / "taken"),
                                    filter_run=data.run, anywhere=True, enqueue=False)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("keep me")

    export = dataset_export_build(export_id=created.pk)

    assert export.status == "failed" and "already exists and is not an empty folder" in export.message
    assert (tmp_path / "taken" / "notes.txt").read_text() == "keep me"


def test_a_full_disk_fails_the_export_and_removes_what_was_written(data, tmp_path, monkeypatch):
    calls = []
    real_write = pq.ParquetWriter.write_table

    def fill_up(self, *args, **kwargs):  # the second row group finds the disk full
        calls.append(1)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", fill_up)

    export = build(data, tmp_path / "out", row_group_rows=2)

    assert export.status == "failed" and "no space left on the device" in export.message
    assert not (tmp_path / "out").exists() and nothing_published(tmp_path)


def test_an_image_missing_from_storage_fails_the_export_and_names_it(data, tmp_path):
    missing = data.comparisons[-1].image_b
    default_storage.delete(missing.storage_key)

    export = build(data, tmp_path / "out")

    assert export.status == "failed"
    assert f"image {missing.sha256} is missing from storage" in export.message
    assert not (tmp_path / "out").exists() and nothing_published(tmp_path)


def test_image_references_need_no_image_bytes(data, tmp_path):
    default_storage.delete(data.comparisons[-1].image_b.storage_key)

    export = build(data, tmp_path / "out", images="reference")

    assert export.status == "succeeded"
    table = pq.read_table(sorted((tmp_path / "out").glob("data/default/*.parquet")))
    assert "jpg_0" not in table.column_names and table.column("image_0_url")[0].as_py().startswith("file://")


def test_an_export_cancelled_half_way_is_cancelled_and_publishes_nothing(data, tmp_path, monkeypatch):
    from curation.exports.images import ImageSource

    real_read = ImageSource.read
    reads = []

    def cancel_on_third_read(self, key, *, uid=""):
        reads.append(key)
        if len(reads) == 3:  # the researcher presses cancel while rows are being written
            DatasetExport.objects.filter(status="running").update(status="cancelling")
            time.sleep(0.6)  # progress is checked at most twice a second
        return real_read(self, key, uid=uid)

    monkeypatch.setattr(ImageSource, "read", cancel_on_third_read)

    export = build(data, tmp_path / "out", row_group_rows=1, rows_per_shard=1)

    assert export.status == "cancelled" and "nothing was published" in export.message
    assert 0 < export.rows_done < len(data.comparisons)
    assert not (tmp_path / "out").exists() and nothing_published(tmp_path)


def test_a_project_without_ratings_gives_a_clear_failed_export(project, tmp_path):
    created = dataset_export_create(project=project, format="pamela", destination=str(tmp_path / "out"),
                                    anywhere=True, enqueue=False)

    export = dataset_export_build(export_id=created.pk)

    assert export.status == "failed" and "nothing to export: the project has no personal ratings" in export.message
    assert not (tmp_path / "out").exists()


def test_trl_without_a_filter_run_is_refused(data, tmp_path):
    with pytest.raises(ValidationError, match="trl rows are a filter run's consensus pairs"):
        dataset_export_create(project=data.project, format="trl", destination=str(tmp_path / "x"), anywhere=True)


def test_the_command_writes_a_dataset_and_reports_its_rows(data, tmp_path, capsys):
    call_command("export_dataset", "cats", "--format", "trl", "--out", str(tmp_path / "cmd"),
                 "--filter-run", str(data.run.pk), "--container", "jsonl", "--option", "images=reference",
                 "--no-progress")

    out = capsys.readouterr().out
    assert "written to" in out and "default/train:" in out
    assert (tmp_path / "cmd" / "manifest.json").exists()


def test_the_command_names_a_bad_format_and_a_failed_export(data, tmp_path):
    with pytest.raises(CommandError, match="unknown format 'nope'"):
        call_command("export_dataset", "cats", "--format", "nope", "--out", str(tmp_path / "a"), "--no-progress")
    with pytest.raises(CommandError, match="failed: no permission to write"):
        call_command("export_dataset", "cats", "--format", "pickapic", "--out", "/sys/prefstudio-export",
                     "--filter-run", str(data.run.pk), "--no-progress")


def test_an_s3_export_uploads_every_file_and_the_manifest_last(data, s3_settings, monkeypatch):
    from curation.exports.destinations import S3Prefix

    client, bucket = s3_settings.client, s3_settings.bucket
    order = []
    real_upload = S3Prefix._upload
    monkeypatch.setattr(S3Prefix, "_upload", lambda self, relative: (order.append(relative),
                                                                     real_upload(self, relative)))

    export = build(data, f"s3://{bucket}/datasets/cats-v1", "pickapic", rows_per_shard=4)

    assert export.status == "succeeded", export.message
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="datasets/cats-v1/")["Contents"])
    listed = sorted(f"datasets/cats-v1/{f['path']}" for f in export.manifest["files"])
    assert keys == sorted(listed + ["datasets/cats-v1/manifest.json"])
    assert order[-2:] == ["README.md", "manifest.json"] and len(order) == len(keys)
    shard = next(f for f in export.manifest["files"] if f["path"].endswith(".parquet"))
    body = client.get_object(Bucket=bucket, Key=f"datasets/cats-v1/{shard['path']}")["Body"].read()
    import hashlib

    assert hashlib.sha256(body).hexdigest() == shard["sha256"]


def test_an_s3_export_to_a_missing_bucket_is_refused_clearly(data, s3_settings):
    with pytest.raises(ValidationError) as caught:
        build(data, "s3://no-such-bucket-here/x")

    assert caught.value.message_dict == {"destination": ["bucket 'no-such-bucket-here' does not exist"]}


def test_a_failed_s3_export_deletes_what_it_had_uploaded(data, s3_settings):
    default_storage.delete(data.comparisons[-1].image_b.storage_key)  # the last shard cannot be written

    export = build(data, f"s3://{s3_settings.bucket}/datasets/broken", rows_per_shard=2)

    assert export.status == "failed" and "missing from storage" in export.message
    listing = s3_settings.client.list_objects_v2(Bucket=s3_settings.bucket, Prefix="datasets/broken/")
    assert listing.get("KeyCount", 0) == 0


def test_an_export_orphaned_by_a_dead_worker_is_taken_over_when_its_task_comes_again(data, tmp_path):
    from datetime import timedelta

    from django.utils import timezone

    created = dataset_export_create(project=data.project, format="trl", destination=str(tmp_path / "out"),
                                    filter_run=data.run, anywhere=True, enqueue=False)
    DatasetExport.objects.filter(pk=created.pk).update(status="running", rows_done=3,
                                                       heartbeat_at=timezone.now() - timedelta(hours=1))

    export = dataset_export_build(export_id=created.pk)

    assert export.status == "succeeded" and (tmp_path / "out" / "manifest.json").exists()


def test_a_running_export_with_a_live_build_is_not_built_twice(data, tmp_path):
    from django.utils import timezone

    created = dataset_export_create(project=data.project, format="trl", destination=str(tmp_path / "out"),
                                    filter_run=data.run, anywhere=True, enqueue=False)
    DatasetExport.objects.filter(pk=created.pk).update(status="running", heartbeat_at=timezone.now())

    export = dataset_export_build(export_id=created.pk)

    assert export.status == "running" and not (tmp_path / "out").exists()
