"""Celery worker processes of a test's own, on a broker of its own.

A test that kills workers or runs them with unusual settings cannot share the session's
`celery_worker_process`: that worker would take its tasks. `private_broker` gives the test a
fresh filesystem broker folder and sends this process's tasks there while it lasts; `WorkerPool`
starts workers on it (each in its own process group, so `kill()` takes its embedded beat too, as
a host that dies would) and stops whatever is left at the end.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, _database_url_for_workers

# Fast job timings: a dead worker's job is noticed within STALE + REAP seconds.
FAST_JOBS = {"JOB_HEARTBEAT_SECONDS": "0.5", "JOB_STALE_AFTER_SECONDS": "2", "JOB_REAP_SECONDS": "1"}


def filesystem_broker_options(folder: Path) -> dict:
    """The transport options config/settings.py derives from CELERY_BROKER_FOLDER."""
    for sub in ("queue", "processed", "control"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return {"data_folder_in": str(folder / "queue"), "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"), "control_folder": str(folder / "control"),
            "store_processed": False}


@contextlib.contextmanager
def sending_to(app, url: str, transport_options: dict):
    """Send this process's tasks to another broker for a while. Celery reads the broker URL from
    the environment before its configuration, and caches its connection and producer pools."""
    def forget_pools():
        app._pool = None
        app.amqp._producer_pool = None

    with pytest.MonkeyPatch.context() as patch:
        for name in ("CELERY_BROKER_WRITE_URL", "CELERY_BROKER_READ_URL"):
            patch.delenv(name, raising=False)
        patch.setenv("CELERY_BROKER_URL", url)
        patch.setitem(app.conf, "broker_url", url)
        patch.setitem(app.conf, "broker_transport_options", transport_options)
        forget_pools()
        try:
            yield
        finally:
            patch.undo()
            forget_pools()


class WorkerPool:
    """Starts `celery worker` processes with one environment (its broker included), each logging
    to a file in `folder`, and stops whatever is left of them."""

    def __init__(self, folder: Path, base_env: dict):
        self.folder, self.base_env, self.processes = folder, base_env, []

    def start(self, *, beat: bool = True, env: dict | None = None, name: str = "w") -> subprocess.Popen:
        index = len(self.processes)
        log_path = self.folder / f"worker-{index}.log"
        argv = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "default,gpu", "--pool", "solo",
                "-l", "info", "--without-mingle", "--without-gossip", "--without-heartbeat",
                "-n", f"{name}{index}-{os.getpid()}@%h"]
        if beat:
            argv += ["-B", "--schedule", str(self.folder / f"beat-{index}")]
        with open(log_path, "w") as log:
            process = subprocess.Popen(argv, cwd=ROOT, env={**self.base_env, **(env or {})}, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        process.log_path = log_path
        self.processes.append(process)
        deadline = time.monotonic() + 60
        while " ready." not in log_path.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                self.kill(process)
                pytest.fail(f"celery worker did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
        return process

    @staticmethod
    def kill(process: subprocess.Popen) -> None:
        """SIGKILL the worker and everything it started (its embedded beat): a host that dies."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    self.kill(process)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)  # an embedded beat left behind


@pytest.fixture
def private_workers(django_db_setup, tmp_path_factory):
    """A WorkerPool on a fresh broker folder this process sends its tasks to, with fast job
    timings (FAST_JOBS) in the workers."""
    from config.celery import app

    folder = tmp_path_factory.mktemp("private-broker")
    options = filesystem_broker_options(folder)
    env = dict(os.environ, DATABASE_URL=_database_url_for_workers(), PYTHONUNBUFFERED="1",
               CELERY_BROKER_URL="filesystem://localhost/", CELERY_BROKER_FOLDER=str(folder),
               IMPORT_LOCAL_ROOTS=str(tmp_path_factory.getbasetemp()), AUTO_JOB_CHUNK_ITEMS="6", **FAST_JOBS)
    pool = WorkerPool(folder, env)
    with sending_to(app, "filesystem://localhost/", options):
        try:
            yield pool
        finally:
            pool.stop_all()
