import json

import huggingface_hub.constants  # noqa: F401  (it reads HF_* at import: before any test sets them)
import pytest

from annotation.assignment import work_units_open
from annotation.image_sources import SourcePolicy
from annotation.importing import manifest_import
from tests.mlworkers.chat_server import ChatServer
from tests.mlworkers.hub_server import HubServer
from tests.mlworkers.test_mllm_backend import judge_dirs  # noqa: F401  (a fixture shared with the job tests)


@pytest.fixture
def chat_server():
    """A scripted OpenAI-compatible chat-completions server on loopback; see chat_server.py."""
    server = ChatServer().start()
    yield server
    server.close()


HUB_TOKEN = "hf_loopbackTokenThatMustNeverBeShown0123"


@pytest.fixture
def hub_server(monkeypatch, settings, tmp_path):
    """A loopback Hub (see hub_server.py) that HF_ENDPOINT points at, its private repos readable
    with HUB_TOKEN; no token or offline mode set, and an empty MODEL_CACHE_DIR."""
    server = HubServer(token=HUB_TOKEN).start()
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    settings.MODEL_CACHE_DIR = str(tmp_path / "model-cache")
    yield server
    server.close()


@pytest.fixture
def imported(project, images_dir):
    lines = [json.dumps({"prompt": "two cats on a sofa", "image": f"{n}.png"}) for n in "abcd"]
    manifest_import(project=project, lines=lines, policy=SourcePolicy.from_settings(images_root=images_dir))
    work_units_open(project=project)
    return project


@pytest.fixture
def admin_client(imported):
    """An API client signed in as pat, an admin of the imported project."""
    from rest_framework.test import APIClient

    from annotation.services import membership_set
    from tests.factories import UserFactory

    admin = UserFactory(username="pat")
    membership_set(project=imported, user=admin, role="admin")
    client = APIClient()
    client.force_login(admin)
    return client
