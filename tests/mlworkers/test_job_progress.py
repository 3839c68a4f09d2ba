"""What an auto-annotation job's counters, status and failures say while it runs, is cancelled and
resumed: progress within a chunk, "cancelling" until the running chunk ends, done + failed <= total
across resumes (a resume counting only what is left), and one failure row per item."""
import json
import threading
import time

import pytest
from django.db import IntegrityError, connection, transaction

from annotation.image_sources import SourcePolicy
from annotation.importing import manifest_import
from annotation.models import AspectScore, PreferenceJudgment
from core.jobs import job_cancel
from mlworkers import runner, services
from mlworkers.backends.base import ScoreResult
from mlworkers.counting import chunk_count
from mlworkers.models import AutoAnnotationChunk, AutoAnnotationFailure, AutoAnnotationJob
from tests.conftest import wait_for
from tests.mlworkers.chat_server import Reply

Job, Chunk = AutoAnnotationJob, AutoAnnotationChunk
ACTIVE = ("queued", "running", "cancelling")
ASPECTS = ["prompt_following", "aesthetic", "fidelity", "harmlessness"]
in_workers = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def add_prompts(project, images_dir, count: int) -> None:
    """`count` more prompts of the same four images (6 pairs each)."""
    lines = [json.dumps({"prompt": f"prompt {p}", "image": f"{n}.png"}) for p in range(2, count + 2) for n in "abcd"]
    manifest_import(project=project, lines=lines, policy=SourcePolicy.from_settings(images_root=images_dir))


def job_body(client, job_id) -> dict:
    return client.get(f"/api/v1/auto-jobs/{job_id}/").json()


def finished(client, job_id):
    body = job_body(client, job_id)
    return body if body["status"] not in ACTIVE else None


def verdict(delay: float = 0.0):
    return lambda request: Reply.chat(json.dumps({"aesthetic": {"choice": "second", "rationale": "cleaner"}}),
                                      delay=delay)


def launch(client, judge, kind="pairs", aspects=("aesthetic",)) -> int:
    launched = client.post("/api/v1/projects/cats/auto-jobs/", {
        "machine_annotator": judge.pk, "kind": kind, "aspects": list(aspects), "orders": "both"}, format="json")
    assert launched.status_code == 202, launched.content
    return launched.json()["id"]


def chat_judge(chat_server, name="vlm", **parameters):
    return services.machine_annotator_create(
        name=name, backend="openai_chat", model_ref="judge",
        parameters={"base_url": chat_server.base_url, "max_retries": 0, "max_concurrency": 1, **parameters})


def within_total(body: dict) -> dict:
    p = body["progress"]
    assert p["done"] + p["failed"] <= p["total"], body
    return body


def watch(client, job_id, seen: list):
    """One look at the job, kept in `seen` (its counters checked); the job once it has ended."""
    body = within_total(job_body(client, job_id))
    seen.append(body)
    return body if body["status"] not in ACTIVE else None


# --- through real workers --------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_counters_move_while_a_chunk_runs(private_workers, imported, admin_client, chat_server):
    private_workers.start(env={"AUTO_JOB_CHUNK_ITEMS": "100", "AUTO_JOB_PROGRESS_SECONDS": "0.2"})
    chat_server.responder = verdict(delay=0.15)
    job_id = launch(admin_client, chat_judge(chat_server))  # 6 pairs x 2 orders, one chunk

    seen = wait_for(lambda: (lambda b: b if b["progress"]["done"] > 0 else None)(job_body(admin_client, job_id)),
                    what="the first counted items")
    chunk = Chunk.objects.get(job_id=job_id)

    assert seen["status"] == "running" and 0 < seen["progress"]["done"] < 12 and seen["progress"]["total"] == 12
    assert chunk.status == "running"  # counted before the chunk ended
    ended = wait_for(lambda: finished(admin_client, job_id), what="the job to end")
    assert ended["status"] == "succeeded"
    assert ended["progress"] == {**ended["progress"], "done": 12, "failed": 0, "total": 12}


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_cancel_reads_cancelling_until_the_running_chunk_ends(private_workers, imported, admin_client, chat_server,
                                                             images_dir):
    add_prompts(imported, images_dir, 2)  # 18 pairs: a chunk of 12 pairs (24 items), then one of 6
    # No worker dies here: a loaded CI machine must not get the chunk taken for dead (2 s in FAST_JOBS).
    private_workers.start(env={"AUTO_JOB_CHUNK_ITEMS": "12", "AUTO_JOB_PROGRESS_SECONDS": "0.2",
                               "JOB_STALE_AFTER_SECONDS": "30"})
    chat_server.responder = verdict(delay=0.1)
    job_id = launch(admin_client, chat_judge(chat_server))
    wait_for(lambda: len(chat_server.requests) >= 2, what="the first chunk to ask the judge")

    cancelled = admin_client.post(f"/api/v1/auto-jobs/{job_id}/cancel/").json()
    seen = []
    ended = wait_for(lambda: watch(admin_client, job_id, seen), what="the job to end")

    assert cancelled["status"] == "cancelling"
    statuses = [body["status"] for body in seen]
    assert statuses[-1] == "cancelled" and set(statuses[:-1]) == {"cancelling"}
    assert len({body["progress"]["done"] for body in seen[:-1]}) > 1  # counting went on while cancelling
    assert ended["progress"] == {**ended["progress"], "done": 24, "failed": 0, "total": 36}
    assert PreferenceJudgment.objects.count() == 24 and len(chat_server.requests) == 24  # the next chunk never ran


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_resumed_job_counts_only_what_is_left_and_never_past_its_total(private_workers, imported, admin_client,
                                                                       chat_server, images_dir):
    add_prompts(imported, images_dir, 41)  # 42 prompts, 252 pairs: 504 items in chunks of 64 pairs
    private_workers.start(env={"AUTO_JOB_CHUNK_ITEMS": "64", "AUTO_JOB_PROGRESS_SECONDS": "0.2",
                               "JOB_STALE_AFTER_SECONDS": "30"})  # no worker dies here either
    garbage = {"left": 2}
    lock = threading.Lock()

    def respond(request):
        with lock:
            if garbage["left"]:
                garbage["left"] -= 1
                return Reply.chat("Both look fine to me.")
        return verdict(delay=0.005)(request)

    chat_server.responder = respond
    job_id = launch(admin_client, chat_judge(chat_server))
    wait_for(lambda: within_total(job_body(admin_client, job_id))["progress"]["done"] >= 40,
             what="the first chunk to be under way")
    admin_client.post(f"/api/v1/auto-jobs/{job_id}/cancel/")
    first = wait_for(lambda: watch(admin_client, job_id, []), what="the cancel to end")
    stored = PreferenceJudgment.objects.count()

    assert first["status"] == "cancelled" and first["progress"]["total"] == 504
    assert first["progress"]["done"] == stored and first["progress"]["failed"] == 2 and 0 < stored < 504

    resumed = admin_client.post(f"/api/v1/auto-jobs/{job_id}/resume/")
    assert resumed.status_code == 202
    seen = []
    second = wait_for(lambda: watch(admin_client, job_id, seen), timeout=120, what="the resumed job to end")

    assert resumed.json()["progress"]["total"] == 504 - stored  # only what is left, from the start
    assert all(body["progress"]["total"] == 504 - stored for body in seen)
    assert second["status"] == "succeeded" and second["message"] == f"{504 - stored} items annotated, 0 failed"
    assert second["progress"] == {**second["progress"], "done": 504 - stored, "failed": 0, "total": 504 - stored}
    assert PreferenceJudgment.objects.count() == 504
    assert not admin_client.get(f"/api/v1/auto-jobs/{job_id}/failures/").json()["results"]  # asked again, answered


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_one_bad_answer_about_four_aspects_is_one_failure_row_listing_them(celery_worker_process, imported,
                                                                          admin_client, chat_server):
    scores = json.dumps({a: {"score": 4, "rationale": "fine"} for a in ASPECTS})
    chat_server.responder = lambda request: Reply.chat(
        "I would rather not score this one." if len(chat_server.requests) == 2 else scores)
    job_id = launch(admin_client, chat_judge(chat_server), kind="score", aspects=ASPECTS)

    job = wait_for(lambda: finished(admin_client, job_id), what="the job to end")
    failures = admin_client.get(f"/api/v1/auto-jobs/{job_id}/failures/").json()["results"]

    assert job["status"] == "succeeded" and job["progress"]["failed"] == 1 and job["progress"]["done"] == 3
    assert len(failures) == 1
    assert failures[0]["aspects"] == ASPECTS and "not JSON" in failures[0]["error"]
    assert failures[0]["raw"] == "I would rather not score this one." and failures[0]["image"]
    assert AspectScore.objects.filter(source="machine").count() == 3 * 4


# --- in this process -------------------------------------------------------------------------------

class ScriptedScorer:
    """A backend scoring every image 3 on each aspect, reporting each image as it goes, and calling
    `between(n)` after the n-th image."""

    def __init__(self, between=lambda n: None):
        self.between = between

    def score(self, requests, progress=None):
        results = []
        for request in requests:
            for image in request.images:
                answer = [ScoreResult(image.image_id, a.key, 3.0) for a in request.aspects]
                results += answer
                progress(answer)
                self.between(len(results) // len(request.aspects))
        return results


@pytest.fixture
def score_job(imported):
    judge = services.machine_annotator_create(name="judge", backend="openai_chat", model_ref="tiny-judge",
                                              parameters={"base_url": "http://127.0.0.1:9/v1"})
    job = services.auto_job_launch(project=imported, annotator=judge, kind="score", aspects=["aesthetic"])
    [chunk_id] = runner.auto_job_start(job_id=job.pk, send=False)  # four images, one chunk
    return job, chunk_id


def counters(job) -> tuple[int, int, int]:
    job.refresh_from_db()
    return job.items_done, job.items_failed, job.items_total


@pytest.mark.django_db
def test_a_chunk_counts_its_items_as_they_come_and_once_when_it_ends(score_job, monkeypatch, settings):
    settings.AUTO_JOB_PROGRESS_SECONDS = 0
    job, chunk_id = score_job
    seen = []
    monkeypatch.setattr(runner, "backend_for", lambda annotator: ScriptedScorer(lambda n: seen.append(counters(job))))

    runner.auto_job_run_chunk(chunk_id=chunk_id)

    assert seen == [(1, 0, 4), (2, 0, 4), (3, 0, 4), (4, 0, 4)]
    assert counters(job) == (4, 0, 4) and Job.objects.get(pk=job.pk).status == "succeeded"


@pytest.mark.django_db
def test_what_a_lost_attempt_counted_is_taken_back_when_its_chunk_runs_again(score_job, monkeypatch, settings):
    job, chunk_id = score_job
    settings.AUTO_JOB_PROGRESS_SECONDS = 0
    first = runner._chunk_claim(chunk_id)[0]
    chunk_count(first, done=3, failed=0)
    assert counters(job) == (3, 0, 4)
    Chunk.objects.filter(pk=chunk_id).update(heartbeat_at=None)  # that worker died

    monkeypatch.setattr(runner, "backend_for", lambda annotator: ScriptedScorer())
    runner.auto_job_chunks_reap()
    assert counters(job) == (0, 0, 4) and Chunk.objects.get(pk=chunk_id).status == "queued"
    runner.auto_job_run_chunk(chunk_id=chunk_id)

    assert counters(job) == (4, 0, 4) and Job.objects.get(pk=job.pk).status == "succeeded"
    assert chunk_count(first, done=4, failed=0) is False  # the lost attempt writes nothing more
    assert counters(job) == (4, 0, 4)


@pytest.mark.django_db
def test_the_database_refuses_counters_past_the_total(score_job):
    job, _ = score_job

    with pytest.raises(IntegrityError, match="autojob_counted_within_total"), transaction.atomic():
        Job.objects.filter(pk=job.pk).update(items_done=4, items_failed=1)


@pytest.mark.django_db(transaction=True)
def test_a_chunk_claimed_while_a_cancel_runs_waits_for_it_and_does_nothing(score_job, monkeypatch):
    job, chunk_id = score_job
    asked = []
    monkeypatch.setattr(runner, "backend_for", lambda annotator: asked.append(annotator) or ScriptedScorer())

    def run_chunk():
        try:
            runner.auto_job_run_chunk(chunk_id=chunk_id)
        finally:
            connection.close()

    with transaction.atomic():
        Job.objects.select_for_update().get(pk=job.pk)  # a cancel holds the job's row
        worker = threading.Thread(target=run_chunk)
        worker.start()
        time.sleep(0.5)
        claimed_meanwhile = Chunk.objects.get(pk=chunk_id).status
        job_cancel(job=job)
    worker.join(timeout=10)

    assert claimed_meanwhile == "queued"
    assert Job.objects.get(pk=job.pk).status == "cancelled"  # no chunk ran: cancelled at once, truthfully
    assert Chunk.objects.get(pk=chunk_id).status == "queued" and not asked


@pytest.mark.django_db
def test_a_chunk_that_fails_as_a_whole_lists_each_item_once_with_every_aspect(imported, monkeypatch):
    judge = services.machine_annotator_create(name="judge", backend="openai_chat", model_ref="tiny-judge",
                                              parameters={"base_url": "http://127.0.0.1:9/v1", "max_retries": 0,
                                                          "timeout_s": 1})
    job = services.auto_job_launch(project=imported, annotator=judge, kind="score", aspects=ASPECTS)
    [chunk_id] = runner.auto_job_start(job_id=job.pk, send=False)

    runner.auto_job_run_chunk(chunk_id=chunk_id)  # nothing listens there: the job fails

    rows = list(AutoAnnotationFailure.objects.filter(job=job).values_list("image_id", "aspects"))
    assert len(rows) == 4 and len({image for image, _ in rows}) == 4
    assert all(aspects == ASPECTS for _, aspects in rows)
    assert counters(job) == (0, 4, 4)


@pytest.mark.django_db
def test_resuming_counts_from_what_was_left_and_times_the_rate_afresh(score_job, monkeypatch):
    job, chunk_id = score_job
    monkeypatch.setattr(runner, "backend_for", lambda annotator: ScriptedScorer())
    runner.auto_job_run_chunk(chunk_id=chunk_id)
    Job.objects.filter(pk=job.pk).update(items_done=3, items_failed=1)  # one image failed
    AspectScore.objects.filter(image_id=Chunk.objects.get(pk=chunk_id).item_ids[-1]).delete()

    resumed = services.auto_job_resume(job=Job.objects.get(pk=job.pk))

    assert (resumed.status, resumed.items_done, resumed.items_failed, resumed.items_total) == ("queued", 0, 0, 1)
    assert resumed.started_at is None
    [again] = runner.auto_job_start(job_id=job.pk, send=False)
    assert counters(job) == (0, 0, 1) and Chunk.objects.get(pk=again).items_total == 1
    assert Job.objects.get(pk=job.pk).message == "resumed: 1 items left to ask"
