"""A bounded schemathesis run against the live OpenAPI schema, in process (the WSGI application):
every operation, called as a platform admin who is the admin of a throwaway project holding
prompts, images, comparisons, judgments, jobs and a finished export, answers with no server error
and as its schema says (status, content type and body).

Each generated call runs in a savepoint that is rolled back, so every call meets the same data
(deleting a member or revoking the token does not change what the next call sees) and the run
is deterministic. Nothing leaves the test database and the test run's folders: exports go under
EXPORT_ROOT, S3 is a loopback server, the model hub is offline, and Celery tasks are never sent
(the test's transaction never commits, so on_commit hooks never run)."""
from datetime import timedelta

import pytest
import schemathesis
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import settings as hypothesis_settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from annotation.assignment import assignments_lease_next, work_units_open
from annotation.models import ImportJob, ImportLineError, MachineAnnotator, Membership, TaskType
from annotation.services import project_create
from curation.exports.services import dataset_export_build, dataset_export_create
from curation.models import DatasetExport
from mlworkers.models import AutoAnnotationFailure, AutoAnnotationJob
from tests.curation.export_data import build_export_data
from tests.factories import UserFactory

# Hypothesis examples per operation, on top of schemathesis' own boundary and example cases: the
# whole API (65 operations) in about 4.5 minutes on 2 busy cores (2.5 minutes of CPU).
MAX_EXAMPLES = 150
SEED = 20240612
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

schema = schemathesis.pytest.from_fixture("live_schema")


@pytest.fixture
def throwaway(db, s3_settings, monkeypatch, tmp_path):
    """A platform admin, admin of project `throwaway` with data behind every kind of endpoint."""
    # Machine annotators' Hub references are checked when saved: never ask the real Hub.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    admin = UserFactory(username="ada", is_staff=True, is_superuser=True)
    project = project_create(creator=admin, slug="throwaway", name="Throwaway")
    Membership.objects.filter(project=project, user=admin).update(role=Membership.Role.ADMIN)
    data = build_export_data(project)
    # A judge an update can keep (its endpoint is never called here), and units leased to the admin to submit.
    MachineAnnotator.objects.filter(pk=data.machine.pk).update(parameters={"base_url": "http://127.0.0.1:9/v1"})
    work_units_open(project=project)
    leased = assignments_lease_next(membership=Membership.objects.get(project=project, user=admin),
                                    task_type=TaskType.PAIRWISE, count=3)

    import_job = ImportJob.objects.create(project=project, manifest_key="imports/none.jsonl", created_by=admin,
                                          status="failed", lines_total=3, lines_done=3, rejected=1)
    ImportLineError.objects.create(job=import_job, line=2, field="image", message="not an image")
    auto_job = AutoAnnotationJob.objects.create(project=project, machine_annotator=data.machine,
                                                machine_version="v1", kind="score", aspects=["aesthetic"],
                                                status="failed", created_by=admin)
    AutoAnnotationFailure.objects.create(job=auto_job, image=data.images[0], aspects=["aesthetic"],
                                         error="no JSON in the answer", raw="I like it")
    export = dataset_export_create(project=project, format="trl", container="jsonl", filter_run=data.run,
                                   created_by=admin, enqueue=False)
    export = dataset_export_build(export_id=export.pk)
    assert export.status == DatasetExport.Status.SUCCEEDED, export.message
    return {
        "token": Token.objects.get_or_create(user=admin)[0].key,
        "project": project, "member": data.people[0].username, "run": data.run, "export": export,
        "import_job": import_job, "auto_job": auto_job, "annotator": data.machine,
        "people": [admin.username, *(user.username for user in data.people)],
        "comparisons": [c.pk for c in data.comparisons], "images": [i.pk for i in data.images],
        "assignments": [a.pk for a in leased],
    }


@pytest.fixture
def live_schema(throwaway, request):
    from config.wsgi import application

    # schemathesis 4.32's from_fixture reads and relabels `item._nodeid`, which pytest 9.2 no longer has.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid

    # As Django's test client does: a request must not close the test's connection (and its transaction).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        export = throwaway["export"]
        config = schemathesis.Config.from_dict({
            "seed": SEED,
            "suppress-health-check": ["too_slow"],  # a timing, which a busy CI machine must not turn into a failure
            "headers": {"Authorization": f"Token {throwaway['token']}"},
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
            # Path parameters name the throwaway project's rows, so calls reach past the 404.
            "parameters": {
                "path.slug": throwaway["project"].slug,
                "path.username": throwaway["member"],
                "path.run_id": throwaway["run"].pk,
                "path.export_id": export.pk,
                "path.path": "manifest.json",
                "path.annotator_id": throwaway["annotator"].pk,
                # Bodies name real rows half the time, so writes get past "no such ...".
                **{f"body.{name}": {"dictionary": dictionary, "probability": 0.5} for name, dictionary in [
                    ("username", "people"), ("machine_annotator", "annotators"), ("filter_run", "runs"),
                    ("units[*].comparison", "comparisons"), ("units[*].image", "images"),
                    ("submissions[*].assignment", "assignments"), ("model_ref", "model_refs")]},
            },
            "dictionaries": {name: {"values": values} for name, values in {
                "people": throwaway["people"], "annotators": [throwaway["annotator"].pk],
                "runs": [throwaway["run"].pk], "comparisons": throwaway["comparisons"],
                "images": throwaway["images"], "assignments": throwaway["assignments"],
                # A Hub reference pinned to a commit needs no Hub (which is offline here).
                "model_refs": ["hf://org/judge@" + "0123456789abcdef" * 2 + "01234567", "judge-model"],
            }.items()},
            "operations": [
                {"include-path-regex": "^/api/v1/imports/", "parameters": {"path.job_id": throwaway["import_job"].pk}},
                {"include-path-regex": "^/api/v1/auto-jobs/", "parameters": {"path.job_id": throwaway["auto_job"].pk}},
            ],
        })
        yield schemathesis.openapi.from_wsgi("/api/schema/?format=json", application, config=config)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.mark.timeout(600)  # a hard stop, well past the run's 4.5 minutes
@schema.parametrize()
@hypothesis_settings(deadline=timedelta(seconds=10))  # a call that slow is a bug (or a network wait) here
def test_every_operation_answers_without_a_server_error_and_as_its_schema_says(case):
    cache.clear()  # each call meets the same cache too
    with transaction.atomic():
        # buffered: the response is read whole and closed, as a server closes it (uploads with it).
        case.call_and_validate(checks=CHECKS, buffered=True)
        transaction.set_rollback(True)
