"""The lifecycle the four kinds of background job share (imports, auto-annotation jobs, filter
runs, dataset exports): cancelling with no worker alive, the reapers, second deliveries and
take-overs, fencing of a worker given up for dead, and unexpected errors. Workers run in-process."""
from datetime import timedelta
from pathlib import Path

import pytest
from celery import current_app
from django.conf import settings
from django.utils import timezone

from annotation.models import AspectScore, ImportJob, Source
from annotation.services import import_job_create, membership_set
from annotation.tasks import import_job_run_task
from core.jobs import JobLost, job_claim, jobs_reap
from curation.exports.services import dataset_export_cleanup, dataset_export_create
from curation.models import DatasetExport, FilterRun, UnitVerdict
from curation.services import filter_run_create, filter_run_execute
from curation.tasks import dataset_export_build_task, filter_run_execute_task
from mlworkers import runner
from mlworkers import services as ml_services
from mlworkers.models import (
    AutoAnnotationChunk,
    AutoAnnotationFailure,
    AutoAnnotationJob,
)
from mlworkers.tasks import auto_job_chunk_task, auto_job_start_task
from tests.conftest import client_for
from tests.curation.test_filter_runs import simulated_crowd
from tests.factories import prompts_with_all_pairs

pytestmark = pytest.mark.django_db
Chunk = AutoAnnotationChunk

# kind: (model, URL of its jobs, its run task, the module whose job_claim claims it)
KINDS = {
    "import": (ImportJob, "/api/v1/imports/", import_job_run_task, "annotation.services"),
    "auto": (AutoAnnotationJob, "/api/v1/auto-jobs/", auto_job_start_task, "mlworkers.runner"),
    "filter": (FilterRun, "/api/v1/filter-runs/", filter_run_execute_task, "curation.services"),
    "export": (DatasetExport, "/api/v1/exports/", dataset_export_build_task, "curation.exports.services"),
}
every_kind = pytest.mark.parametrize("kind", list(KINDS))
MANIFEST = b'{"prompt": "two cats on a sofa", "image": "https://example.org/cat.png"}\n'


def long_ago():
    """Older than any live worker's last heartbeat."""
    return timezone.now() - timedelta(seconds=settings.JOB_STALE_AFTER_SECONDS + 60)


def worker_holds(job, *, last_seen, attempts=1, status="running", planned=False) -> None:
    """A worker runs `job` and beat last at `last_seen`. An auto job `planned` is past planning
    and a worker runs its first chunk (a planned job lives by its chunks' heartbeats)."""
    if planned:
        first = runner.auto_job_start(job_id=job.pk, send=False)[0]
        Chunk.objects.filter(pk=first).update(status="running", attempts=attempts, heartbeat_at=last_seen)
    type(job).objects.filter(pk=job.pk).update(status=status, attempts=attempts, started_at=long_ago(),
                                               heartbeat_at=last_seen)
    job.refresh_from_db()


def lifecycle(job) -> tuple:
    job.refresh_from_db()
    return job.status, job.attempts, job.heartbeat_at, job.message


@pytest.fixture(autouse=True)
def export_folders(settings, tmp_path):
    settings.EXPORT_ROOT = str(tmp_path / "exports")
    settings.EXPORT_STAGING_DIR = str(tmp_path / "export-staging")


@pytest.fixture
def sent(monkeypatch):
    """Tasks sent to the broker, as (name, args), instead of sending them."""
    calls = []
    monkeypatch.setattr(current_app._get_current_object(), "send_task",
                        lambda name, args=None, kwargs=None, **options: calls.append((name, list(args or []))))
    return calls


@pytest.fixture
def new_job(project, researcher):
    """new_job(kind): a queued job of that kind on project `cats`."""
    def make(kind):
        if kind == "import":
            return import_job_create(project=project, creator=researcher, manifest=MANIFEST)
        if kind == "auto":
            prompts_with_all_pairs(project, prompts=2, images_per_prompt=2)
            judge = ml_services.machine_annotator_create(name="judge", backend="openai_chat", model_ref="tiny-judge",
                                                         parameters={"base_url": "http://127.0.0.1:9/v1"})
            return ml_services.auto_job_launch(project=project, annotator=judge, kind="score", created_by=researcher)
        if kind == "filter":
            return filter_run_create(project=project, name="nightly", rules=None, created_by=researcher)
        return dataset_export_create(project=project, format="pamela", created_by=researcher, enqueue=False)
    return make


@pytest.fixture
def reap(monkeypatch, django_capture_on_commit_callbacks):
    """Run the job reaper once, sending what it sends on commit."""
    # jobs_reap first drops a stale database connection, as a worker should; in a test that
    # connection holds the test's transaction (autocommit off, which Django takes for stale).
    monkeypatch.setattr("core.jobs.close_old_connections", lambda: None)

    def run():
        with django_capture_on_commit_callbacks(execute=True):
            return jobs_reap()
    return run


@pytest.fixture
def manager(project, researcher):
    """An API client of a project admin (auto jobs are an admin's; the rest a researcher's too)."""
    membership_set(project=project, user=researcher, role="admin")
    return client_for(researcher)


def cancel(client, kind, job):
    return client.post(f"{KINDS[kind][1]}{job.pk}/cancel/")


# --- cancel with no worker alive ----------------------------------------------------------------

@every_kind
def test_cancelling_a_queued_job_ends_it_before_it_starts(kind, new_job, manager):
    job = new_job(kind)

    response = cancel(manager, kind, job)

    assert response.status_code == 200
    assert (response.json()["status"], response.json()["message"]) == ("cancelled", "cancelled before it started")


@every_kind
def test_cancelling_a_job_whose_worker_died_ends_it_at_once_and_sends_its_cleanup(
        kind, new_job, manager, sent, django_capture_on_commit_callbacks):
    job = new_job(kind)
    worker_holds(job, last_seen=long_ago(), planned=kind == "auto")

    with django_capture_on_commit_callbacks(execute=True):
        response = cancel(manager, kind, job)

    assert (response.json()["status"], response.json()["message"]) == ("cancelled", "cancelled; its worker had stopped")
    assert sent == ([(job.cleanup_task, [job.pk])] if job.cleanup_task else [])


@every_kind
def test_cancelling_a_job_with_a_live_worker_leaves_the_stop_to_that_worker(kind, new_job, manager):
    job = new_job(kind)
    worker_holds(job, last_seen=timezone.now(), planned=kind == "auto")

    response = cancel(manager, kind, job)

    assert response.json()["status"] == "cancelling" and lifecycle(job)[0] == "cancelling"


@every_kind
def test_cancelling_a_finished_job_is_a_400_naming_its_status(kind, new_job, manager):
    job = new_job(kind)
    type(job).objects.filter(pk=job.pk).update(status="succeeded", finished_at=timezone.now())

    response = cancel(manager, kind, job)

    assert response.status_code == 400 and "has already succeeded" in response.json()["message"]


def test_cleanup_of_an_export_cancelled_after_its_worker_died_removes_its_staging_folder(new_job, manager):
    export = new_job("export")
    target = Path(export.destination)
    staging = target.parent / f".{target.name}.incomplete-{export.pk}-1"  # what the dead attempt 1 wrote
    (staging / "data").mkdir(parents=True)
    (staging / "data" / "train-00000.parquet").write_bytes(b"PAR1")
    worker_holds(export, last_seen=long_ago())

    assert cancel(manager, "export", export).json()["status"] == "cancelled"
    dataset_export_cleanup(export_id=export.pk)

    assert not staging.exists() and not target.exists()


def test_cleanup_of_an_s3_export_cancelled_after_its_worker_died_empties_its_prefix(project, researcher, manager,
                                                                                   s3_settings):
    client, bucket = s3_settings.client, s3_settings.bucket
    export = dataset_export_create(project=project, format="pamela", destination=f"s3://{bucket}/datasets/cats",
                                   created_by=researcher, enqueue=False)
    client.put_object(Bucket=bucket, Key="datasets/cats/data/train-00000.parquet", Body=b"PAR1")
    staging = Path(settings.EXPORT_STAGING_DIR) / f"export-{export.pk}-1"
    staging.mkdir(parents=True)
    worker_holds(export, last_seen=long_ago())

    assert cancel(manager, "export", export).json()["status"] == "cancelled"
    dataset_export_cleanup(export_id=export.pk)

    assert client.list_objects_v2(Bucket=bucket, Prefix="datasets/")["KeyCount"] == 0 and not staging.exists()


def test_an_auto_job_cancelled_while_its_chunks_are_queued_ends_cancelled(new_job, sent, monkeypatch):
    job = new_job("auto")  # four images: one chunk
    app = current_app._get_current_object()
    record = app.send_task  # into `sent`

    def queue_and_cancel(name, args=None, **options):  # the researcher cancels as the planner queues chunks
        record(name, args)
        ml_services.auto_job_cancel(job=job)

    monkeypatch.setattr(app, "send_task", queue_and_cancel)

    auto_job_start_task.apply(args=[job.pk])

    assert sent and lifecycle(job)[0] == "cancelled"


def test_planning_an_auto_job_cancelled_since_its_claim_stops_quietly(new_job, monkeypatch):
    job = new_job("auto")

    def claim_then_cancel(model, pk):  # the researcher cancels between the claim and the planning
        lease = job_claim(model, pk)
        ml_services.auto_job_cancel(job=job)
        return lease

    monkeypatch.setattr(runner, "job_claim", claim_then_cancel)

    assert not runner.auto_job_start(job_id=job.pk, send=False)
    assert not Chunk.objects.filter(job=job).exists()


# --- the job reaper -----------------------------------------------------------------------------

@every_kind  # an auto job whose planning died
def test_reaper_queues_again_a_job_whose_worker_went_silent(kind, new_job, sent, reap):
    job = new_job(kind)
    worker_holds(job, last_seen=long_ago())

    reap()

    assert lifecycle(job)[0] == "queued"
    assert job.message == f"its worker stopped; queued again (attempt 2 of {settings.JOB_MAX_ATTEMPTS})"
    assert sent == [(job.run_task, [job.pk])]


@every_kind
def test_reaper_fails_a_job_that_lost_its_last_allowed_worker(kind, new_job, sent, reap):
    job = new_job(kind)
    worker_holds(job, last_seen=long_ago(), attempts=settings.JOB_MAX_ATTEMPTS)

    reap()

    assert lifecycle(job)[0] == "failed" and job.message.startswith("worker lost")


def test_reaper_failing_an_export_that_lost_its_last_allowed_worker_sends_its_cleanup(new_job, sent, reap):
    export = new_job("export")  # its dead workers' staging folders (or S3 uploads) are left behind
    worker_holds(export, last_seen=long_ago(), attempts=settings.JOB_MAX_ATTEMPTS)

    reap()

    assert lifecycle(export)[0] == "failed" and sent == [(export.cleanup_task, [export.pk])]


@every_kind
def test_reaper_leaves_a_job_with_a_live_worker_alone(kind, new_job, sent, reap):
    job = new_job(kind)
    worker_holds(job, last_seen=timezone.now())
    before = lifecycle(job)

    reap()

    assert lifecycle(job) == before and sent == []


def test_reaper_leaves_a_planned_auto_job_whose_chunks_wait_in_the_queue(new_job, sent, reap):
    job = new_job("auto")
    runner.auto_job_start(job_id=job.pk, send=False)
    AutoAnnotationJob.objects.filter(pk=job.pk).update(heartbeat_at=long_ago())  # no chunk has started
    before = lifecycle(job)

    reap()

    assert lifecycle(job) == before and before[0] == "running" and sent == []


@every_kind
def test_reaper_ends_a_silent_cancelling_job_and_sends_its_cleanup(kind, new_job, sent, reap):
    job = new_job(kind)
    worker_holds(job, last_seen=long_ago(), status="cancelling")

    reap()

    assert lifecycle(job)[0] == "cancelled"
    assert sent == ([(job.cleanup_task, [job.pk])] if job.cleanup_task else [])


# --- the chunk reaper -----------------------------------------------------------------------------

def test_chunk_reaper_queues_a_silent_chunk_again_and_sends_its_task(new_job, sent, django_capture_on_commit_callbacks):
    job = new_job("auto")
    worker_holds(job, last_seen=long_ago(), planned=True)
    chunk = Chunk.objects.get(job=job, status="running")

    with django_capture_on_commit_callbacks(execute=True):
        runner.auto_job_chunks_reap()

    chunk.refresh_from_db()
    assert chunk.status == "queued" and sent == [(runner.CHUNK_TASK, [chunk.pk])]


def test_a_chunk_lost_too_often_records_its_items_as_worker_lost_failures(new_job, settings):
    settings.AUTO_JOB_CHUNK_ITEMS = 2  # one prompt's two images a chunk: two chunks
    job = new_job("auto")
    worker_holds(job, last_seen=long_ago(), attempts=settings.JOB_MAX_ATTEMPTS, planned=True)
    chunk = Chunk.objects.get(job=job, status="running")

    runner.auto_job_chunks_reap()

    job.refresh_from_db()
    failures = AutoAnnotationFailure.objects.filter(job=job)
    assert sorted(failures.values_list("image_id", flat=True)) == sorted(chunk.item_ids)
    assert all(f.error.startswith("worker lost") for f in failures)
    assert (job.status, job.items_failed, job.chunks_done, job.chunks_total) == ("running", 2, 1, 2)


def test_when_the_last_chunk_is_lost_too_often_the_job_ends_with_its_failures_counted(new_job):
    job = new_job("auto")  # four images, one chunk
    worker_holds(job, last_seen=long_ago(), attempts=settings.JOB_MAX_ATTEMPTS, planned=True)

    runner.auto_job_chunks_reap()

    job.refresh_from_db()
    assert (job.status, job.items_done, job.items_failed) == ("succeeded", 0, 4)
    assert job.message == "0 items annotated, 4 failed"


# --- second deliveries and take-overs -----------------------------------------------------------

@every_kind  # an auto job in planning
def test_a_second_delivery_while_a_live_worker_holds_the_job_does_nothing(kind, new_job):
    job = new_job(kind)
    worker_holds(job, last_seen=timezone.now())
    before = lifecycle(job)

    KINDS[kind][2].apply(args=[job.pk])

    assert lifecycle(job) == before


def test_a_second_delivery_of_a_chunk_a_live_worker_holds_does_nothing(new_job, monkeypatch):
    job = new_job("auto")
    worker_holds(job, last_seen=timezone.now(), planned=True)
    chunk = Chunk.objects.get(job=job, status="running")
    monkeypatch.setattr(runner, "backend_for", lambda annotator: pytest.fail("the judge was asked twice"))

    auto_job_chunk_task.apply(args=[chunk.pk])

    assert Chunk.objects.get(pk=chunk.pk).attempts == 1 and lifecycle(job)[0] == "running"


@every_kind
def test_a_delivery_for_a_job_whose_worker_went_silent_takes_it_over(kind, new_job):
    job = new_job(kind)
    worker_holds(job, last_seen=long_ago())

    lease = job_claim(type(job), job.pk)

    assert lifecycle(job)[:2] == ("running", 2) and lease.attempt == 2
    assert job.message == f"taken over after its worker was lost (attempt 2 of {settings.JOB_MAX_ATTEMPTS})"


# --- fencing: a worker given up for dead writes nothing -------------------------------------------

def take_over(model, pk) -> None:
    """What another worker's take-over leaves in the database."""
    model.objects.filter(pk=pk).update(attempts=2, heartbeat_at=timezone.now())


def test_a_lease_whose_job_was_taken_over_can_neither_beat_nor_end_it(new_job):
    run = new_job("filter")
    lease = job_claim(FilterRun, run.pk)
    take_over(FilterRun, run.pk)

    with pytest.raises(JobLost):
        lease.beat()
    assert not lease.succeed("done") and not lease.fail("broken") and not lease.cancelled()
    assert lifecycle(run)[:2] == ("running", 2) and run.message == ""


def test_a_filter_run_taken_over_while_it_computed_stores_no_verdicts(project, monkeypatch):
    import curation.services

    simulated_crowd(project, units=20)
    run = filter_run_create(project=project, name="nightly", rules=None)
    computed = []
    real_evaluate = curation.services.filter_run_evaluate

    def evaluate_then_lose_the_run(run):
        summary, verdicts = real_evaluate(run)
        computed.append(len(verdicts))
        take_over(FilterRun, run.pk)
        return summary, verdicts

    monkeypatch.setattr(curation.services, "filter_run_evaluate", evaluate_then_lose_the_run)

    filter_run_execute(run_id=run.pk)

    assert computed == [20] and not UnitVerdict.objects.filter(run=run).exists()
    assert lifecycle(run)[:2] == ("running", 2) and run.summary == {}


def test_a_chunk_taken_over_while_its_worker_judged_stores_nothing(new_job, monkeypatch):
    job = new_job("auto")
    chunk_id = runner.auto_job_start(job_id=job.pk, send=False)[0]

    def judge_then_lose_the_chunk(job, backend, chunk):
        Chunk.objects.filter(pk=chunk_id).update(attempts=2, heartbeat_at=timezone.now())
        scores = [AspectScore(**runner._machine(job, image_id=i, aspect="aesthetic", value=3.0))
                  for i in chunk.item_ids]
        return scores, [], len(chunk.item_ids), 0

    monkeypatch.setattr(runner, "backend_for", lambda annotator: object())
    monkeypatch.setattr(runner, "_score_chunk", judge_then_lose_the_chunk)

    runner.auto_job_run_chunk(chunk_id=chunk_id)

    job.refresh_from_db()
    assert not AspectScore.objects.filter(source=Source.MACHINE).exists()
    assert (job.items_done, job.chunks_done, Chunk.objects.get(pk=chunk_id).status) == (0, 0, "running")


# --- unexpected errors --------------------------------------------------------------------------

def boom(*args, **kwargs):
    raise RuntimeError("boom")


@pytest.mark.parametrize("kind, inside", [("import", "annotation.services.manifest_import"),
                                          ("filter", "curation.services.filter_run_evaluate"),
                                          ("export", "curation.exports.services._write")])
def test_an_unexpected_error_in_a_job_fails_it_with_the_error(kind, inside, new_job, monkeypatch):
    job = new_job(kind)
    monkeypatch.setattr(inside, boom)

    KINDS[kind][2].apply(args=[job.pk])

    assert lifecycle(job)[0] == "failed" and "RuntimeError: boom" in job.message


def test_an_unexpected_error_in_a_chunk_fails_its_items_and_the_job(new_job, monkeypatch, sent):
    job = new_job("auto")
    auto_job_start_task.apply(args=[job.pk])
    [(_, [chunk_id])] = sent
    monkeypatch.setattr(runner, "backend_for", lambda annotator: object())
    monkeypatch.setattr(runner, "_score_chunk", boom)

    auto_job_chunk_task.apply(args=[chunk_id])

    assert lifecycle(job)[0] == "failed" and "RuntimeError: boom" in job.message
    failures = AutoAnnotationFailure.objects.filter(job=job)
    assert sorted(failures.values_list("image_id", flat=True)) == sorted(Chunk.objects.get(pk=chunk_id).item_ids)
    assert all("RuntimeError: boom" in f.error for f in failures)


@every_kind
def test_a_task_that_raises_before_claiming_its_job_fails_the_job_through_on_failure(kind, new_job, monkeypatch):
    job = new_job(kind)
    monkeypatch.setattr(f"{KINDS[kind][3]}.job_claim", boom)

    result = KINDS[kind][2].apply(args=[job.pk])

    assert result.failed()  # Celery called JobTask.on_failure, which failed the queued job
    assert lifecycle(job)[0] == "failed" and "RuntimeError: boom" in job.message
