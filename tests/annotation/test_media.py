"""Image files go only to members of a project holding them: local media through the app (or the
web server it redirects to), S3 through signed URLs that name the endpoint browsers reach."""
import json
import urllib.request

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client

from annotation.image_sources import SourcePolicy
from annotation.importing import manifest_import
from annotation.models import Image
from core.storage import S3PublicUrlStorage
from curation.exports.selectors import dataset_export_file_open
from curation.models import DatasetExport
from tests.conftest import client_for, image_bytes
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def import_one(project, images_dir, name="a.png"):
    manifest_import(project=project, lines=[json.dumps({"prompt": "p", "image": name})],
                    policy=SourcePolicy.from_settings(images_root=images_dir))
    return Image.objects.filter(project=project).latest("id")


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.fixture
def image(project, images_dir):
    return import_one(project, images_dir)


def test_a_member_gets_the_original_and_the_preview_at_the_urls_the_api_gives(image, annotator, images_dir):
    listed = client_for(annotator).get("/api/v1/projects/cats/images/").json()["results"][0]
    client = signed_in(annotator)

    original = client.get(listed["url"])
    preview = client.get(listed["preview_url"])

    assert listed["url"] == f"/media/{image.storage_key}"
    assert original.status_code == 200 and body(original) == (images_dir / "a.png").read_bytes()
    assert preview.status_code == 200 and body(preview)[:4] == b"RIFF" and preview["Content-Type"] == "image/webp"
    assert "private" in original["Cache-Control"]


def test_someone_signed_in_who_is_no_member_of_the_images_project_gets_404(image, outsider):
    assert signed_in(outsider).get(f"/media/{image.storage_key}").status_code == 404
    assert signed_in(outsider).get(f"/media/{image.preview_key}").status_code == 404


def test_nobody_signed_in_is_refused_without_the_file(image):
    response = Client().get(f"/media/{image.storage_key}")

    assert response.status_code == 403 and b"PNG" not in body(response)


def test_an_api_token_is_as_good_as_a_session(image, annotator, outsider):
    assert client_for(annotator).get(f"/media/{image.storage_key}").status_code == 200
    assert client_for(outsider).get(f"/media/{image.storage_key}").status_code == 404


def test_a_file_shared_by_two_projects_goes_to_a_member_of_either(image, images_dir, outsider):
    other = ProjectFactory(slug="dogs")
    same_bytes = import_one(other, images_dir)
    dog_person = MembershipFactory(project=other, user=UserFactory(username="dora"), role="annotator").user

    assert same_bytes.storage_key == image.storage_key
    assert signed_in(dog_person).get(f"/media/{image.storage_key}").status_code == 200
    assert signed_in(outsider).get(f"/media/{image.storage_key}").status_code == 404


def test_a_platform_admin_gets_any_image(image, platform_admin):
    assert signed_in(platform_admin).get(f"/media/{image.storage_key}").status_code == 200


def test_stored_files_that_are_no_images_file_go_to_nobody(project, researcher, platform_admin):
    key = default_storage.save("imports/manifest-of-secrets.jsonl", ContentFile(b'{"prompt": "secret"}\n'))

    for user in (researcher, platform_admin):
        assert signed_in(user).get(f"/media/{key}").status_code == 404


def test_paths_leaving_the_media_folder_are_not_found(image, platform_admin):
    assert signed_in(platform_admin).get(f"/media/../{image.storage_key}").status_code == 404
    assert signed_in(platform_admin).get("/media/images/../../../etc/passwd").status_code == 404


def test_with_an_internal_redirect_prefix_the_web_server_is_told_to_send_the_file(image, annotator, settings):
    settings.MEDIA_INTERNAL_REDIRECT_PREFIX = "/protected-media/"

    response = signed_in(annotator).get(f"/media/{image.storage_key}")

    assert response.status_code == 200 and response.content == b""
    assert response["X-Accel-Redirect"] == f"/protected-media/{image.storage_key}"
    assert response["Content-Type"] == "image/png"


def test_a_refused_request_is_not_redirected_to_the_web_server(image, outsider, settings):
    settings.MEDIA_INTERNAL_REDIRECT_PREFIX = "/protected-media/"

    response = signed_in(outsider).get(f"/media/{image.storage_key}")

    assert response.status_code == 404 and "X-Accel-Redirect" not in response


# --- S3: signed URLs name the public endpoint --------------------------------------------------

@pytest.fixture
def public_s3(s3_settings):
    """The app reaches S3 at 127.0.0.1, browsers at localhost: the same server under another name."""
    s3_settings.settings.AWS_S3_PUBLIC_ENDPOINT_URL = s3_settings.endpoint.replace("127.0.0.1", "localhost")
    s3_settings.public = s3_settings.settings.AWS_S3_PUBLIC_ENDPOINT_URL
    return s3_settings


def test_s3_storage_signs_urls_for_the_public_endpoint_and_they_fetch_the_file(public_s3):
    storage = S3PublicUrlStorage()
    key = storage.save("images/ab/one.png", ContentFile(image_bytes()))

    url = storage.url(key)

    assert url.startswith(f"{public_s3.public}/{public_s3.bucket}/images/ab/one.png?")
    assert "Signature=" in url or "X-Amz-Signature=" in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == image_bytes()


def test_s3_storage_reads_and_writes_through_the_private_endpoint_only(s3_settings):
    s3_settings.settings.AWS_S3_PUBLIC_ENDPOINT_URL = "https://prefs.example.invalid"
    storage = S3PublicUrlStorage()

    key = storage.save("images/cd/two.png", ContentFile(image_bytes()))

    assert storage.exists(key) and storage.open(key).read() == image_bytes()
    assert storage.url(key).startswith(f"https://prefs.example.invalid/{s3_settings.bucket}/images/cd/two.png?")


def test_without_a_public_endpoint_s3_urls_name_the_endpoint_the_app_uses(s3_settings):
    s3_settings.settings.AWS_S3_PUBLIC_ENDPOINT_URL = None

    assert S3PublicUrlStorage().url("images/x.png").startswith(f"{s3_settings.endpoint}/{s3_settings.bucket}/")


def test_export_files_on_s3_are_signed_for_the_public_endpoint(public_s3, project):
    export = DatasetExport.objects.create(
        project=project, format="pamela", container="jsonl", destination=f"s3://{public_s3.bucket}/exports/1",
        status=DatasetExport.Status.SUCCEEDED,
        manifest={"files": [{"path": "data.jsonl", "bytes": 3, "rows": 1, "sha256": "0" * 64}]})
    public_s3.client.put_object(Bucket=public_s3.bucket, Key="exports/1/data.jsonl", Body=b"{}\n")

    url = dataset_export_file_open(export=export, path="data.jsonl")

    assert url.startswith(f"{public_s3.public}/{public_s3.bucket}/exports/1/data.jsonl?")
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"{}\n"


def test_an_expired_api_token_is_refused(image, annotator):
    from rest_framework.authtoken.models import Token

    client = client_for(annotator)
    Token.objects.filter(user=annotator).update(created="2000-01-01T00:00:00Z")

    assert client.get(f"/media/{image.storage_key}").status_code == 403
