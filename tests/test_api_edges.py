"""Every answer under /api/ is JSON in the one error shape, whatever went wrong and wherever: a body
too large, a wrong method, a CSRF failure, a bad page, the database or the broker down; /healthz/
says which part is down; the schema answers its first requests in a fresh process; the docs page
loads nothing from another origin."""
import concurrent.futures
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from django.contrib.staticfiles import finders
from django.http import HttpResponse
from django.test import Client
from django.urls import path
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.conftest import ROOT, _database_url_for_workers, client_for, free_port
from tests.factories import PromptFactory


def assert_error_shape(response, status, *words):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = json.loads(response.content)
    assert set(body) == {"message", "extra"} and isinstance(body["message"], str)
    for word in words:
        assert word in body["message"]
    return body


def _an_unexempt_api_view(request):
    return HttpResponse("changed")


# A view under /api/ that is not CSRF-exempt, for the CSRF failure view (every real one is a
# DRF view, exempt and checked by DRF itself).
urlpatterns = [path("api/v1/plain/", _an_unexempt_api_view)]


# --- 413, 405, 404, CSRF ----------------------------------------------------------------------

@pytest.mark.django_db
def test_a_body_over_the_upload_limit_is_answered_413_in_the_error_shape(researcher):
    body = json.dumps({"slug": "big", "name": "x" * 3_000_000})

    response = client_for(researcher).post("/api/v1/projects/", body, content_type="application/json")

    assert_error_shape(response, 413, "too large")


@pytest.mark.django_db
def test_a_form_body_over_the_upload_limit_read_by_the_csrf_check_is_answered_413(researcher):
    client = Client(enforce_csrf_checks=True)
    client.get("/accounts/login/")  # sets the CSRF cookie, so the check reads the form for its token
    client.force_login(researcher)

    response = client.post("/api/v1/nowhere/", "a=" + "x" * 3_000_000, content_type="application/x-www-form-urlencoded")

    assert_error_shape(response, 413, "too large")


@pytest.mark.django_db
def test_a_method_a_view_does_not_have_is_answered_405_in_the_error_shape(researcher):
    assert_error_shape(client_for(researcher).put("/api/v1/projects/", {}, format="json"), 405, "PUT")
    assert_error_shape(APIClient().post("/api/schema/"), 405, "POST")


@pytest.mark.django_db
def test_a_body_of_a_media_type_an_operation_does_not_read_is_answered_415_as_the_schema_documents(researcher,
                                                                                                   project):
    response = client_for(researcher).generic("POST", "/api/v1/projects/cats/members/", b"anna",
                                              content_type="application/octet-stream")

    assert_error_shape(response, 415, "application/octet-stream")
    paths = APIClient().get("/api/schema/?format=json").json()["paths"]
    assert "415" in paths["/api/v1/projects/{slug}/members/"]["post"]["responses"]
    assert "415" not in paths["/api/v1/projects/{slug}/members/"]["get"]["responses"]  # reads no body


@pytest.mark.django_db
def test_whole_numbers_past_what_the_database_holds_are_a_400_naming_the_field(researcher, project):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from annotation.models import MachineAnnotator, Membership

    Membership.objects.filter(project=project, user=researcher).update(role=Membership.Role.ADMIN)
    judge = MachineAnnotator.objects.create(name="judge", backend="openai_chat", model_ref="m", version="v1",
                                            parameters={"base_url": "http://127.0.0.1:9/v1"})
    client = client_for(researcher)
    manifest = SimpleUploadedFile("m.jsonl", b'{"prompt": "a cat", "image": "a.png"}\n')

    imported = client.post("/api/v1/projects/cats/imports/", {"manifest": manifest, "max_pairs_per_prompt": 2**31})
    launched = client.post("/api/v1/projects/cats/auto-jobs/", {"machine_annotator": judge.pk, "kind": "score",
                                                                 "sample_size": 2**31}, format="json")

    assert_error_shape(imported, 400, "max_pairs_per_prompt")
    assert_error_shape(launched, 400, "sample_size")


@pytest.mark.django_db
def test_an_unknown_api_path_is_answered_404_in_the_error_shape_for_any_method(researcher):
    client = client_for(researcher)

    assert_error_shape(client.get("/api/v1/nowhere/"), 404, "/api/v1/nowhere/")
    assert_error_shape(client.delete("/api/v2/projects/"), 404, "/api/v2/projects/")


@pytest.mark.django_db
@pytest.mark.urls("tests.test_api_edges")
def test_a_csrf_failure_under_api_is_answered_403_in_the_error_shape(researcher):
    client = Client(enforce_csrf_checks=True)
    client.force_login(researcher)

    body = assert_error_shape(client.post("/api/v1/plain/", {"a": "b"}), 403, "CSRF")

    assert body["extra"]["code"] == "csrf_failed"


@pytest.mark.django_db
def test_a_csrf_failure_outside_api_is_still_django_page(researcher):
    response = Client(enforce_csrf_checks=True).post("/accounts/login/", {"username": "rita", "password": "x"})

    assert response.status_code == 403 and response["Content-Type"].startswith("text/html")


# --- pagination -------------------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("query, parameter", [
    ("page=abc", "page"), ("page=0", "page"), ("page=-2", "page"), ("page=", "page"),
    ("page_size=abc", "page_size"), ("page_size=0", "page_size"), ("page_size=501", "page_size"),
])
def test_a_bad_page_or_page_size_is_a_400_naming_the_parameter(annotator, project, query, parameter):
    response = client_for(annotator).get(f"/api/v1/projects/cats/prompts/?{query}")

    body = assert_error_shape(response, 400, parameter)
    assert parameter in body["extra"]["fields"]


@pytest.mark.django_db
def test_a_page_past_the_last_is_a_404_in_the_error_shape(annotator, project):
    PromptFactory.create_batch(3, project=project)
    client = client_for(annotator)

    assert client.get("/api/v1/projects/cats/prompts/?page_size=2&page=2").json()["count"] == 3
    assert_error_shape(client.get("/api/v1/projects/cats/prompts/?page_size=2&page=3"), 404, "past the last page (2)")


@pytest.mark.django_db
def test_an_empty_list_still_has_a_first_page_and_the_last_page_can_be_named(annotator, project):
    client = client_for(annotator)
    assert client.get("/api/v1/projects/cats/prompts/?page=1").json()["results"] == []

    PromptFactory.create_batch(3, project=project)
    assert len(client.get("/api/v1/projects/cats/prompts/?page_size=2&page=last").json()["results"]) == 1


# --- the database or the broker down: a real process, a real refused connection ---------------

PROBE = """
import json, sys
import django
django.setup()
from django.test import Client
client = Client(raise_request_exception=False)
out = []
for method, url, headers, data in json.loads(sys.argv[1]):
    response = getattr(client, method)(url, data=data, content_type="application/json", headers=headers)
    out.append({"status": response.status_code, "type": response["Content-Type"], "body": response.content.decode()})
print(json.dumps(out))
"""


def probe(env_extra, requests):
    """Runs `requests` through the whole app (every middleware) in a fresh process with `env_extra`."""
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="config.settings", **env_extra)
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(requests)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_probe_error(answer, status, code):
    assert answer["status"] == status and answer["type"].startswith("application/json"), answer
    body = json.loads(answer["body"])
    assert set(body) == {"message", "extra"} and body["extra"]["code"] == code, body
    return body


def test_with_the_database_down_the_api_answers_503_in_the_error_shape_and_healthz_names_the_database():
    down = f"postgres://postgres@127.0.0.1:{free_port()}/prefstudio"

    health, listing, token = probe({"DATABASE_URL": down}, [
        ["get", "/healthz/", {}, None],
        ["get", "/api/v1/projects/", {"Authorization": "Token 0123456789abcdef"}, None],
        ["post", "/api/v1/auth/token/", {}, {"username": "rita", "password": "x"}],
    ])

    assert health["status"] == 503
    assert json.loads(health["body"])["checks"]["database"] == "unavailable"
    assert "database" in assert_probe_error(listing, 503, "database_unavailable")["message"]
    assert_probe_error(token, 503, "database_unavailable")


def test_a_database_host_that_never_answers_fails_healthz_within_the_connect_timeout():
    # A listener that takes the connection and never speaks: what a firewalled or wedged host looks like.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        started = time.monotonic()
        [health] = probe({"DATABASE_URL": f"postgres://postgres@127.0.0.1:{silent.getsockname()[1]}/prefstudio",
                          "DATABASE_CONNECT_TIMEOUT": "2"}, [["get", "/healthz/", {}, None]])
        took = time.monotonic() - started
    finally:
        silent.close()

    assert health["status"] == 503
    assert json.loads(health["body"])["checks"]["database"] == "unavailable"
    assert took < 30, f"/healthz/ took {took:.0f} s against a silent database host"


@pytest.mark.django_db(transaction=True)
def test_with_the_broker_down_a_call_that_queues_work_answers_503_and_healthz_names_the_broker(researcher, project):
    token = Token.objects.create(user=researcher).key
    env = {"DATABASE_URL": _database_url_for_workers(), "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}

    health, run = probe(env, [
        ["get", "/healthz/", {}, None],
        ["post", "/api/v1/projects/cats/filter-runs/", {"Authorization": f"Token {token}"}, {"name": "default"}],
    ])

    assert health["status"] == 503
    assert json.loads(health["body"]) == {"status": "unavailable",
                                          "checks": {"database": "ok", "broker": "unavailable"}}
    assert "broker" in assert_probe_error(run, 503, "broker_unavailable")["message"]


@pytest.mark.django_db
def test_healthz_answers_200_when_the_database_and_broker_answer(client):
    response = client.get("/healthz/")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


# --- the schema's first requests in a fresh process -------------------------------------------

@pytest.fixture
def fresh_server(django_db_setup):
    """`manage.py runserver` (threaded, as in the demo) in a new process on the test database; its base URL."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "manage.py", "runserver", "--noreload", "--skip-checks",
                               f"127.0.0.1:{port}"], cwd=ROOT,
                              env=dict(os.environ, DATABASE_URL=_database_url_for_workers()),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise AssertionError(f"runserver did not start: {server.communicate()[0]}") from None
            time.sleep(0.1)
    yield base
    server.terminate()
    server.communicate(timeout=30)


def _status(url):
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            json.loads(response.read())
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_first_schema_requests_of_a_fresh_process_all_answer_200(fresh_server):
    # Concurrent first requests raced in drf-spectacular's lazy loading of its extensions and
    # answered 500 ('NoneType' object has no attribute 'startswith').
    url = f"{fresh_server}/api/schema/?format=json"
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(_status, [url] * 8))

    assert statuses == [200] * 8


# --- the docs page ----------------------------------------------------------------------------

def test_the_docs_page_loads_only_same_origin_assets_and_no_inline_script(client):
    page = client.get("/api/docs/").content.decode()

    urls = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert urls and all(url.startswith("/") and not url.startswith("//") for url in urls), urls
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), "an inline script"
    for url in urls:
        if url.startswith("/static/"):
            assert finders.find(url.removeprefix("/static/")), f"{url} is not a local static file"
    init_script = next(url for url in urls if url.startswith("/api/docs/"))
    response = client.get(init_script)
    assert response.status_code == 200 and response["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle" in response.content
