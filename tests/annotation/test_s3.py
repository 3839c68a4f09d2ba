"""S3 for storage and for s3:// imports, against moto's S3 server on loopback over HTTP."""
import pytest
from django.core.files.storage import default_storage

from annotation.image_sources import SourcePolicy
from annotation.importing import manifest_import
from annotation.models import Image
from tests.conftest import client_for, image_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def s3_storage(s3_settings):
    s3_settings.settings.STORAGES = {**s3_settings.settings.STORAGES,
                                     "default": {"BACKEND": "storages.backends.s3.S3Storage"}}
    return s3_settings


def import_lines(project, lines):
    return manifest_import(project=project, lines=[__import__("json").dumps(l) for l in lines],
                           policy=SourcePolicy.from_settings(images_root=None))


def test_s3_references_import_into_s3_storage_with_previews(s3_storage, project):
    client, bucket = s3_storage.client, s3_storage.bucket
    client.put_object(Bucket=bucket, Key="incoming/one.png", Body=image_bytes(color=(1, 2, 3), size=(900, 600)))
    client.put_object(Bucket=bucket, Key="incoming/two.jpg", Body=image_bytes(color=(9, 8, 7), fmt="JPEG"))

    summary = import_lines(project, [{"prompt": "p", "image": f"s3://{bucket}/incoming/one.png"},
                                     {"prompt": "p", "image": f"s3://{bucket}/incoming/two.jpg"}])

    assert (summary.images_created, summary.comparisons_created, summary.rejected) == (2, 1, 0)
    keys = {obj["Key"] for obj in client.list_objects_v2(Bucket=bucket)["Contents"]}
    for image in Image.objects.all():
        assert image.storage_key in keys and image.preview_key in keys
    assert default_storage.__class__.__name__ == "S3Storage"


def test_missing_s3_object_and_bucket_are_rejected_by_name(s3_storage, project):
    bucket = s3_storage.bucket

    summary = import_lines(project, [{"prompt": "p", "image": f"s3://{bucket}/nope.png"},
                                     {"prompt": "p", "image": "s3://no-such-bucket-here/x.png"}])

    messages = [e.message for e in summary.errors]
    assert messages[0] == f"S3 object not found: s3://{bucket}/nope.png"
    assert "no-such-bucket-here" in messages[1]
    assert Image.objects.count() == 0


def test_image_urls_from_the_api_are_signed_urls_on_the_s3_endpoint(s3_storage, project, researcher):
    bucket = s3_storage.bucket
    s3_storage.client.put_object(Bucket=bucket, Key="in/a.png", Body=image_bytes())
    import_lines(project, [{"prompt": "p", "image": f"s3://{bucket}/in/a.png"}])

    image = client_for(researcher).get("/api/v1/projects/cats/images/").json()["results"][0]

    assert image["url"].startswith(f"{s3_storage.endpoint}/{bucket}/images/")
    assert "Signature=" in image["url"] or "X-Amz-Signature=" in image["url"]
