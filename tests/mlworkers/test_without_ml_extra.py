"""A worker installed without the `ml` extra (no torch, torchvision, transformers, open_clip):
HTTP judges run on it, local-model judges fail naming the extra to install.

The missing extra is simulated by a `sitecustomize.py` put first on PYTHONPATH, whose finder
refuses those modules as if they were not installed; the checks run in processes started with it.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from annotation.models import PreferenceJudgment
from mlworkers import services
from mlworkers.backends.base import backend_class, backend_names
from tests.conftest import ROOT, _database_url_for_workers, wait_for
from tests.mlworkers.chat_server import alternating_verdicts
from tests.workers import WorkerPool, filesystem_broker_options, sending_to

ML_MODULES = ("torch", "torchvision", "transformers", "open_clip")

SITECUSTOMIZE = f"""
import sys

BLOCKED = {set(ML_MODULES)!r}


class WithoutMlExtra:
    \"\"\"Refuses the `ml` extra's modules the way Python refuses a module that is not installed.\"\"\"

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, WithoutMlExtra())
"""


@pytest.fixture(scope="module")
def without_ml_extra(tmp_path_factory):
    """The environment of a Python that cannot import the `ml` extra's modules."""
    folder = tmp_path_factory.mktemp("without-ml-extra")
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")])),
               DJANGO_SETTINGS_MODULE="config.settings", PYTHONUNBUFFERED="1")
    refused = subprocess.run([sys.executable, "-c", "import torch"], cwd=ROOT, env=env, capture_output=True,
                             text=True, check=False)
    assert "No module named 'torch'" in refused.stderr, "the sitecustomize does not block torch"
    return env


def test_only_judges_that_run_a_local_model_require_the_ml_extra():
    local = {name for name in backend_names() if backend_class(name).requires}

    assert local == {"clipscore", "hpsv2", "laion_aesthetic", "pickscore", "mllm_transformers"}
    assert all("torch" in backend_class(name).requires and backend_class(name).extra == "ml" for name in local)
    assert backend_class("openai_chat").requires == ()


BACKEND_FOR_SCRIPT = textwrap.dedent("""
    import json, sys

    import django

    django.setup()
    from annotation.models import MachineAnnotator
    from mlworkers.backends.base import BackendUnavailable
    from mlworkers.services import backend_for

    blocked = set(sys.argv[1:])

    chat = backend_for(MachineAnnotator(name="judge", backend="openai_chat", model_ref="judge", version="v1",
                                        parameters={"base_url": "http://127.0.0.1:9/v1"}))
    try:
        backend_for(MachineAnnotator(name="clip", backend="clipscore", model_ref="/models/clip-vit-b-32", version="v2"))
        refusal = ""
    except BackendUnavailable as exc:
        refusal = str(exc)
    print(json.dumps({"chat": type(chat).__name__, "refusal": refusal,
                      "ml_modules_loaded": sorted(m for m in sys.modules if m.partition(".")[0] in blocked)}))
""")


def test_backend_for_builds_an_http_judge_without_torch_and_refuses_clipscore_naming_the_extra(without_ml_extra):
    done = subprocess.run([sys.executable, "-c", BACKEND_FOR_SCRIPT, *ML_MODULES], cwd=ROOT, env=without_ml_extra,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])

    assert outcome["chat"] == "OpenAIChatBackend"
    assert outcome["ml_modules_loaded"] == []
    assert "`ml` extra" in outcome["refusal"] and "torch" in outcome["refusal"] and "open_clip" in outcome["refusal"]
    assert "prefstudio[ml]" in outcome["refusal"] and "clipscore" in outcome["refusal"]


# --- a real worker without the extra ---------------------------------------------------------------

@pytest.fixture(scope="module")
def torchless_worker(django_db_setup, tmp_path_factory, without_ml_extra):
    """A `celery worker` whose Python cannot import torch, on a broker of its own: this process sends
    its tasks there while the fixture lasts, so the session's `celery_worker_process`, which may
    be running, never takes them."""
    from config.celery import app

    broker = tmp_path_factory.mktemp("torchless-broker")
    options = filesystem_broker_options(broker)
    env = dict(without_ml_extra, DATABASE_URL=_database_url_for_workers(), CELERY_BROKER_URL="filesystem://localhost/",
               CELERY_BROKER_FOLDER=str(broker), IMPORT_LOCAL_ROOTS=str(tmp_path_factory.getbasetemp()),
               AUTO_JOB_CHUNK_ITEMS="6")
    pool = WorkerPool(broker, env)  # a fresh broker folder holds no stale messages: nothing to purge
    try:
        process = pool.start(beat=False, name="torchless")
        with sending_to(app, "filesystem://localhost/", options):
            yield process
    finally:
        pool.stop_all()


FINISHED = ("succeeded", "failed", "cancelled")


def launch_and_wait(client, **payload) -> dict:
    launched = client.post("/api/v1/projects/cats/auto-jobs/", payload, format="json")
    assert launched.status_code == 202, launched.content

    def finished():
        body = client.get(f"/api/v1/auto-jobs/{launched.json()['id']}/").json()
        return body if body["status"] in FINISHED else None

    return wait_for(finished, timeout=60, what="the job to finish")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_an_http_judge_job_succeeds_on_a_worker_without_the_ml_extra(torchless_worker, imported, admin_client,
                                                                     chat_server):
    judge = services.machine_annotator_create(name="vlm", backend="openai_chat", model_ref="judge",
                                              parameters={"base_url": chat_server.base_url, "max_retries": 0})
    chat_server.responder = alternating_verdicts
    log_before = len(torchless_worker.log_path.read_text())

    job = launch_and_wait(admin_client, machine_annotator=judge.pk, kind="pairs", aspects=["aesthetic"], orders="one")

    assert job["status"] == "succeeded", job
    assert job["progress"]["done"] == 6 and job["progress"]["failed"] == 0
    assert PreferenceJudgment.objects.filter(machine_annotator=judge, aspect="aesthetic").count() == 6
    assert "mlworkers.auto_job_chunk" in torchless_worker.log_path.read_text()[log_before:]  # this worker ran it


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_clipscore_job_fails_on_a_worker_without_the_ml_extra_naming_the_extra(torchless_worker, imported,
                                                                                   admin_client, tmp_path):
    # The requirement is checked before any weights are read: an empty folder will do (saving checks it exists).
    (tmp_path / "ViT-B-32").mkdir()
    judge = services.machine_annotator_create(name="clip", backend="clipscore", model_ref=str(tmp_path / "ViT-B-32"),
                                              parameters={"num_workers": 0})

    job = launch_and_wait(admin_client, machine_annotator=judge.pk, kind="score")

    assert job["status"] == "failed", job
    assert "`ml` extra" in job["message"] and "prefstudio[ml]" in job["message"] and "torch" in job["message"]
