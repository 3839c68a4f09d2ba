"""A worker killed (SIGKILL, with its embedded beat) in the middle of each kind of job, then a fresh
worker started: every job ends by itself within the bound the settings give (stale heartbeat +
reaper period, plus the work), with nothing written twice and nothing lost.

Each test holds the first worker at a known point of its job (a loopback server that does not
answer, a table lock, a named pipe that nobody writes), kills it there, lets go of the hold, and
starts a fresh worker on the same private broker (tests/workers.py)."""
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.files.storage import default_storage
from django.db import connection, connections

from annotation.models import Comparison, Image, ImportJob, Prompt, WorkUnit
from annotation.services import import_job_create
from curation.exports.services import dataset_export_create
from curation.models import DatasetExport, FilterRun, UnitVerdict
from curation.services import filter_run_create
from mlworkers import services as ml_services
from mlworkers.models import AutoAnnotationChunk, AutoAnnotationJob
from tests.conftest import image_bytes, wait_for
from tests.curation.export_data import build_export_data
from tests.curation.test_filter_runs import simulated_crowd
from tests.workers import FAST_JOBS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

# Stale heartbeat + a reaper pass + a worker's start and the work itself, with room for a slow CI.
RECOVERY_S = float(FAST_JOBS["JOB_STALE_AFTER_SECONDS"]) + float(FAST_JOBS["JOB_REAP_SECONDS"]) + 40


def status_of(model, pk) -> str:
    return model.objects.values_list("status", flat=True).get(pk=pk)


def ended(model, pk):
    job = model.objects.get(pk=pk)
    return job if job.is_finished else None


class HeldImages:
    """Serves PNGs on loopback; the path in `held` is not answered until `release()`."""

    def __init__(self, held: str):
        self.held, self.release_event, self.asked = held, threading.Event(), threading.Event()
        images = {f"/img/{n}.png": image_bytes(color=(20 * n, 90, 200 - 20 * n), size=(64, 48)) for n in range(10)}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == outer.held:
                    outer.asked.set()
                    outer.release_event.wait(60)
                body = images.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def release(self):
        self.release_event.set()

    def close(self):
        self.release()
        self.server.shutdown()
        self.server.server_close()


def test_an_import_whose_worker_died_goes_on_after_its_last_committed_chunk_and_opens_its_units(
        private_workers, project, researcher):
    held = HeldImages(held="/img/4.png")  # line 5: the third chunk of two lines
    env = {"IMPORT_CHUNK_LINES": "2", "IMPORT_ALLOW_PRIVATE_URLS": "true"}
    try:
        first = private_workers.start(env=env)
        lines = [json.dumps({"prompt": f"a red fox, take {n // 2}", "image": f"{held.base_url}/img/{n}.png"})
                 for n in range(8)]
        job = import_job_create(project=project, creator=researcher, manifest="\n".join(lines).encode())
        assert held.asked.wait(30), "the worker never reached the held image"
        assert ImportJob.objects.get(pk=job.pk).lines_done == 4  # two chunks committed

        private_workers.kill(first)
        held.release()
        private_workers.start(env=env)
        done = wait_for(lambda: ended(ImportJob, job.pk), timeout=RECOVERY_S, what="the import to end")
    finally:
        held.close()

    assert done.status == "succeeded", done.message
    assert done.attempts == 2 and done.lines_done == 8 and done.images_created == 8 and done.rejected == 0
    assert Prompt.objects.filter(project=project).count() == 4
    assert Image.objects.filter(project=project).count() == 8
    assert Comparison.objects.filter(project=project).count() == 4  # one pair per prompt, none twice
    assert WorkUnit.objects.filter(project=project, comparison__isnull=False).count() == 4


@pytest.fixture
def three_prompts(project, images_dir):
    """Three prompts of two images each: one pair a prompt, one chunk a prompt (AUTO_JOB_CHUNK_ITEMS=1)."""
    from annotation.assignment import work_units_open
    from annotation.image_sources import SourcePolicy
    from annotation.importing import manifest_import

    lines = [json.dumps({"prompt": f"a cat, take {n}", "image": f"{name}.png"})
             for n, names in enumerate(["ab", "cd", "ad"]) for name in names]
    manifest_import(project=project, lines=lines, policy=SourcePolicy.from_settings(images_root=images_dir))
    work_units_open(project=project)
    return project


def test_an_auto_annotation_job_whose_worker_died_asks_only_what_is_missing(private_workers, three_prompts):
    from annotation.models import PreferenceJudgment
    from tests.mlworkers.chat_server import ChatServer, alternating_verdicts

    release, asked = threading.Event(), threading.Event()
    chat_server = ChatServer().start()

    def respond(request):
        if len(chat_server.requests) == 3:  # the first question of the second chunk to run: hold it
            asked.set()
            release.wait(60)
        return alternating_verdicts(request)

    chat_server.responder = respond
    try:
        judge = ml_services.machine_annotator_create(
            name="vlm", backend="openai_chat", model_ref="judge",
            parameters={"base_url": chat_server.base_url, "max_retries": 0, "max_concurrency": 1})
        first = private_workers.start(env={"AUTO_JOB_CHUNK_ITEMS": "1"})
        job = ml_services.auto_job_launch(project=three_prompts, annotator=judge, kind="pairs", aspects=["aesthetic"])
        assert asked.wait(30), "the worker never reached the second chunk"
        # the filesystem broker hands out queued chunks in no fixed order
        assert sorted(AutoAnnotationChunk.objects.filter(job=job).values_list("status", flat=True)) == [
            "done", "queued", "running"]

        private_workers.kill(first)
        release.set()
        private_workers.start(env={"AUTO_JOB_CHUNK_ITEMS": "1"})
        done = wait_for(lambda: ended(AutoAnnotationJob, job.pk), timeout=RECOVERY_S, what="the job to end")
        asked_in_all = len(chat_server.requests)
    finally:
        release.set()
        chat_server.close()

    assert done.status == "succeeded", done.message
    assert done.items_done == done.items_total == 6 and done.items_failed == 0
    assert PreferenceJudgment.objects.filter(machine_annotator=judge).count() == 6  # 3 pairs x 2 orders, once each
    assert asked_in_all == 2 + 1 + 2 + 2  # the done chunk was not asked again; the held question was
    assert sorted(AutoAnnotationChunk.objects.filter(job=job).values_list("status", "attempts")) == [
        ("done", 1), ("done", 1), ("done", 2)]


@pytest.mark.skipif("os.environ.get('DATABASE_URL', '').startswith('sqlite') or not os.environ.get('DATABASE_URL')",
                    reason="holds the worker with a PostgreSQL table lock; SQLite has none that blocks readers")
def test_a_filter_run_whose_worker_died_is_computed_again_and_stores_each_verdict_once(private_workers, project,
                                                                                     researcher):
    simulated_crowd(project, units=40)
    first = private_workers.start()
    holder = connections.create_connection("default")  # a second connection of this test's own
    try:
        holder.set_autocommit(False)
        with holder.cursor() as cursor:
            cursor.execute("LOCK TABLE curation_unitverdict IN ACCESS EXCLUSIVE MODE")
        run = filter_run_create(project=project, name="default", rules={}, created_by=researcher)
        wait_for(lambda: _waits_on_lock(), timeout=30, what="the run to wait on the verdict table")
        assert status_of(FilterRun, run.pk) == "running"

        private_workers.kill(first)
    finally:
        holder.rollback()
        holder.close()
    private_workers.start()
    done = wait_for(lambda: ended(FilterRun, run.pk), timeout=RECOVERY_S, what="the filter run to end")

    assert done.status == "succeeded", done.message
    assert done.attempts == 2
    assert UnitVerdict.objects.filter(run=run).count() == done.summary["units"] == 40


def _waits_on_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'curation_unitverdict'::regclass")
        return cursor.fetchone()[0] > 0


def _held_image(data) -> tuple[str, bytes]:
    """Replace the last comparison's second image file by a named pipe: reading it blocks."""
    key = data.comparisons[-1].image_b.storage_key
    path = default_storage.path(key)
    original = open(path, "rb").read()
    os.unlink(path)
    os.mkfifo(path)
    return path, original


def _let_go(path: str, original: bytes) -> None:
    """Put the real file back in place of the pipe (its reader was killed)."""
    os.unlink(path)
    with open(path, "wb") as handle:
        handle.write(original)


def _staging_leftovers(export) -> list:
    from pathlib import Path

    target = Path(export.destination)
    return list(target.parent.glob(f".{target.name}.incomplete-*"))


def _export_held_mid_build(private_workers, project, researcher):
    data = build_export_data(project, prompts=3)
    path, original = _held_image(data)
    first = private_workers.start()
    export = dataset_export_create(project=project, format="pickapic", filter_run=data.run, created_by=researcher,
                                   options={"images": "embed", "row_group_rows": 2, "rows_per_shard": 2})
    wait_for(lambda: _staging_leftovers(DatasetExport.objects.get(pk=export.pk)), timeout=30,
             what="the export to start writing")
    time.sleep(1)  # it has written what comes before the held image, and waits on it
    assert status_of(DatasetExport, export.pk) == "running"
    return first, export, path, original


def test_an_export_whose_worker_died_is_taken_over_and_published_once(private_workers, project, researcher):
    first, export, path, original = _export_held_mid_build(private_workers, project, researcher)

    private_workers.kill(first)
    _let_go(path, original)
    private_workers.start()
    done = wait_for(lambda: ended(DatasetExport, export.pk), timeout=RECOVERY_S, what="the export to end")

    assert done.status == "succeeded", done.message
    assert done.attempts == 2 and done.rows_done == done.rows_total > 0
    assert json.loads(open(os.path.join(done.destination, "manifest.json")).read()) == done.manifest
    assert _staging_leftovers(done) == []


def test_an_export_cancelled_after_its_worker_died_ends_cancelled_and_its_staging_is_removed(
        private_workers, project, researcher):
    from core.jobs import job_cancel

    first, export, path, original = _export_held_mid_build(private_workers, project, researcher)
    private_workers.kill(first)
    _let_go(path, original)

    cancelled = job_cancel(job=DatasetExport.objects.get(pk=export.pk))  # no worker is alive now
    assert cancelled.status in ("cancelling", "cancelled")
    private_workers.start()
    done = wait_for(lambda: ended(DatasetExport, export.pk) and not _staging_leftovers(export) and
                    DatasetExport.objects.get(pk=export.pk), timeout=RECOVERY_S,
                    what="the export to end cancelled and its staging to go")

    assert done.status == "cancelled" and done.attempts == 1
    assert not os.path.exists(done.destination)
