"""Every page sends a strict Content-Security-Policy; proxy headers are trusted only when told."""
import json
import re

import pytest
from django.test import Client

from tests.test_config import PRODUCTION_ENV, run_manage

STRICT = {
    "default-src": "'self'",
    "style-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
}
PAGES = ["/", "/projects/cats/progress/", "/projects/cats/auto-jobs/", "/projects/cats/filter-runs/",
         "/projects/cats/exports/", "/work/cats/pairwise/", "/admin/", "/api/docs/", "/projects/cats/members/",
         "/join-project/"]


def policy(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return {d.split(" ", 1)[0]: d.split(" ", 1)[1] for d in (part.strip() for part in header.split(";")) if d}


@pytest.fixture
def signed_in(project, researcher):
    researcher.is_staff = True  # sees the admin too
    researcher.save()
    client = Client()
    client.force_login(researcher)
    return client


def test_the_sign_in_page_sends_the_strict_policy():
    directives = policy(Client().get("/accounts/login/"))

    assert STRICT.items() <= directives.items()
    assert directives["script-src"] == "'self'" and directives["img-src"].split()[:2] == ["'self'", "data:"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_sends_the_strict_policy(signed_in, path):
    response = signed_in.get(path)

    assert response.status_code == 200
    assert STRICT.items() <= policy(response).items()
    assert "unsafe-inline" not in response["Content-Security-Policy"]


def test_only_the_workspace_import_map_carries_the_nonce_its_response_allows(signed_in):
    workspace = signed_in.get("/work/cats/pairwise/")
    nonce = re.search(r"'nonce-([^']+)'", policy(workspace)["script-src"]).group(1)
    html = workspace.content.decode()

    assert f'<script type="importmap" nonce="{nonce}">' in html
    assert len(re.findall(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", html)) == 1
    assert "nonce-" not in signed_in.get("/").get("Content-Security-Policy")
    assert nonce not in policy(signed_in.get("/work/cats/pairwise/"))["script-src"]  # a new one each time


def _settings_of(env_extra: dict, names: list[str]) -> dict:
    code = ("import json; from django.conf import settings; "
            f"print(json.dumps({{n: getattr(settings, n, None) for n in {names!r}}}, default=str))")
    result = run_manage("shell", "-c", code, env_extra=env_extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _img_src(env_extra: dict) -> list[str]:
    return _settings_of(env_extra, ["CONTENT_SECURITY_POLICY"])["CONTENT_SECURITY_POLICY"]["DIRECTIVES"]["img-src"]


def test_images_may_come_from_the_s3_endpoint_browsers_reach():
    s3 = {"STORAGE_BACKEND": "s3", "AWS_STORAGE_BUCKET_NAME": "prefstudio", "AWS_S3_ENDPOINT_URL": "http://minio:9000"}

    assert _img_src(s3) == ["'self'", "data:", "http://minio:9000"]
    assert _img_src(s3 | {"AWS_S3_PUBLIC_ENDPOINT_URL": "https://files.example.org/s3"}) == \
        ["'self'", "data:", "https://files.example.org"]


def test_images_may_come_from_the_aws_bucket_hosts_when_no_endpoint_is_set():
    aws = {"STORAGE_BACKEND": "s3", "AWS_STORAGE_BUCKET_NAME": "prefs", "AWS_S3_REGION_NAME": "eu-west-1"}

    assert _img_src(aws) == ["'self'", "data:", "https://prefs.s3.amazonaws.com",
                             "https://prefs.s3.eu-west-1.amazonaws.com"]


def test_images_may_come_from_an_absolute_media_url_and_nowhere_else_by_default():
    assert _img_src({"DJANGO_MEDIA_URL": "https://media.example.org/m/"}) == \
        ["'self'", "data:", "https://media.example.org"]
    assert _img_src({}) == ["'self'", "data:"]


def test_production_trusts_no_proxy_header_unless_told():
    names = ["SECURE_PROXY_SSL_HEADER", "USE_X_FORWARDED_HOST"]

    assert _settings_of(PRODUCTION_ENV, names) == {"SECURE_PROXY_SSL_HEADER": None, "USE_X_FORWARDED_HOST": False}
    assert _settings_of(PRODUCTION_ENV | {"DJANGO_TRUST_PROXY_HEADERS": "true"}, names) == \
        {"SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"], "USE_X_FORWARDED_HOST": True}

