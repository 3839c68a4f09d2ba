"""Import jobs at the edges of their input: lines the database cannot store, bytes that are not
UTF-8, and manifests too large to hold in the web process's memory."""
import json

import pytest
from celery import current_app
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile

import annotation.services
from annotation.models import Image, ImportJob, ImportLineError, Prompt
from annotation.services import import_job_create, import_job_run
from annotation.uploads import ManifestUploadHandler
from tests.conftest import client_for

pytestmark = pytest.mark.django_db(transaction=True)  # the job commits chunk by chunk, as on a worker


@pytest.fixture(autouse=True)
def nothing_sent(monkeypatch):
    """Jobs run in-process here: their tasks are not sent to a broker on commit."""
    monkeypatch.setattr(current_app._get_current_object(), "send_task", lambda *args, **kwargs: None)


def jsonl(*lines) -> bytes:
    return b"".join((line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines)


def test_lines_the_database_cannot_store_are_rejected_alone_and_the_job_imports_the_rest(
        project, researcher, images_dir, settings):
    settings.IMPORT_LOCAL_ROOTS = [str(images_dir.parent)]
    manifest = jsonl(
        {"prompt": "two cats", "image": "a.png"},
        {"prompt": "two cats\u0000", "image": "b.png"},
        {"prompt": "two cats", "image": "c.png", "meta": {"caption": "\ud800"}},
        b'{"prompt": "caf\xe9", "image": "c.png"}',
        {"prompt": "two cats", "image": "d.png"},
    )
    job = import_job_create(project=project, creator=researcher, manifest=manifest, images_root=str(images_dir))

    job = import_job_run(job_id=job.pk)

    assert job.status == "succeeded", job.message
    assert (job.lines_total, job.lines_done, job.images_created, job.rejected) == (5, 5, 2, 3)
    errors = list(ImportLineError.objects.filter(job=job).order_by("line").values_list("line", "field", "message"))
    assert errors == [
        (2, "prompt", "prompt contains a NUL character"),
        (3, "meta", "meta.caption contains an unpaired surrogate \\ud800"),
        (4, "", f"not valid UTF-8: byte 0xe9 at offset 15 of the line, byte {len(manifest.split(b'caf')[0]) + 3} "
                f"of the file (offsets count bytes from 0)"),
    ]
    assert list(Prompt.objects.values_list("text", flat=True)) == ["two cats"]
    assert Image.objects.count() == 2


# --- uploads: streamed to a temporary file, limited in size -----------------------------------

def upload(client, body: bytes, **fields):
    return client.post("/api/v1/projects/cats/imports/",
                       {"manifest": SimpleUploadedFile("manifest.jsonl", body), **fields}, format="multipart")


def test_an_uploaded_manifest_streams_to_a_temporary_file_and_into_storage_in_chunks(
        researcher, project, monkeypatch):
    chunks, handed_over = [], []
    receive = ManifestUploadHandler.receive_data_chunk
    monkeypatch.setattr(ManifestUploadHandler, "receive_data_chunk",
                        lambda self, data, start: chunks.append(len(data)) or receive(self, data, start))
    create = annotation.services.import_job_create

    def create_spy(*, manifest, **kwargs):
        handed_over.append(manifest)
        return create(manifest=manifest, **kwargs)

    monkeypatch.setattr(annotation.services, "import_job_create", create_spy)
    body = jsonl(*({"prompt": f"prompt {i}", "image": f"https://example.org/{i}.png"} for i in range(5000)))

    response = upload(client_for(researcher), body)

    assert response.status_code == 202, response.content
    assert len(body) > 200_000 and len(chunks) > 3 and max(chunks) <= ManifestUploadHandler.chunk_size
    [manifest] = handed_over
    assert isinstance(manifest, TemporaryUploadedFile)  # on disk, whatever its size: never read whole
    job = ImportJob.objects.get()
    assert job.lines_total == 5000
    with default_storage.open(job.manifest_key, "rb") as stored:
        assert stored.read() == body


@pytest.mark.parametrize("size", [1_500, 200_000], ids=["found-while-streaming", "refused-by-its-length"])
def test_a_manifest_over_the_limit_is_answered_413_in_the_error_shape(researcher, project, settings, size):
    settings.IMPORT_MANIFEST_MAX_BYTES = 1_000
    line = json.dumps({"prompt": "p", "image": "https://example.org/a.png"}).encode() + b"\n"
    body = line * (size // len(line) + 1)

    response = upload(client_for(researcher), body)

    assert response.status_code == 413
    assert response.json() == {
        "message": "The manifest is over the 1000-byte limit (IMPORT_MANIFEST_MAX_BYTES); split it into several imports.",
        "extra": {"code": "manifest_too_large"},
    }
    assert ImportJob.objects.count() == 0


def test_a_manifest_over_the_limit_given_to_the_service_is_refused(researcher, project, settings):
    from annotation.uploads import ManifestTooLarge

    settings.IMPORT_MANIFEST_MAX_BYTES = 10

    with pytest.raises(ManifestTooLarge):
        import_job_create(project=project, creator=researcher, manifest=jsonl({"prompt": "p", "image": "a.png"}))
    assert ImportJob.objects.count() == 0
