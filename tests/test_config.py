import os
import subprocess
import sys

import pytest
import yaml
from django.core.management import call_command
from django.urls import get_resolver

from tests.conftest import ROOT

PRODUCTION_ENV = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "k" * 20 + "-production-secret-with-enough-entropy-0123456789",
    "DJANGO_ALLOWED_HOSTS": "prefstudio.example.org",
}


def run_manage(*args, env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")} | env_extra
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_production_refuses_to_start_without_a_secret_key():
    result = run_manage("check", env_extra={"DJANGO_DEBUG": "false"})

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is false" in result.stderr


def test_deploy_check_is_clean_under_production_variables():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env_extra=PRODUCTION_ENV)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_unknown_storage_backend_is_refused_by_name():
    result = run_manage("check", env_extra={"STORAGE_BACKEND": "ftp"})

    assert result.returncode != 0 and "STORAGE_BACKEND must be 'local' or 's3', not 'ftp'" in result.stderr


def test_openapi_schema_is_valid_without_warnings_and_covers_every_api_view(tmp_path):
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = yaml.safe_load(out.read_text())

    api_routes = [p for p in _all_routes() if p.startswith("api/v1/")]
    documented = {path.lstrip("/") for path in schema["paths"]}
    assert api_routes and len(documented) == len(api_routes)
    for operation in (op for item in schema["paths"].values() for op in item.values()):
        assert "200" in operation["responses"] or "201" in operation["responses"] or "202" in operation["responses"] \
            or "204" in operation["responses"]
        assert "401" in operation["responses"] or operation["operationId"] == "auth_token_obtain"


def _all_routes(resolver=None, prefix=""):
    resolver = resolver or get_resolver()
    for pattern in resolver.url_patterns:
        route = prefix + str(pattern.pattern)
        if hasattr(pattern, "url_patterns"):
            yield from _all_routes(pattern, route)
        else:
            yield route


@pytest.mark.django_db
def test_schema_and_docs_pages_are_served(client):
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200


@pytest.mark.django_db
def test_health_endpoint_answers_without_login(client):
    assert client.get("/healthz/").json()["status"] == "ok"


def test_beat_sends_both_job_reapers_and_the_adaptive_refresh_and_workers_know_their_tasks(settings):
    from django.apps import apps

    from config.celery import app

    app.loader.import_default_modules()
    sent = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}

    assert sent == {"core.jobs_reap", "mlworkers.auto_job_chunks_reap", "annotation.adaptive_refresh_all"}
    assert sent <= set(app.tasks)
    for model in ("annotation.ImportJob", "mlworkers.AutoAnnotationJob", "curation.FilterRun", "curation.DatasetExport"):
        job_model = apps.get_model(model)
        assert job_model.run_task in app.tasks and (job_model.cleanup_task is None or job_model.cleanup_task in app.tasks)
