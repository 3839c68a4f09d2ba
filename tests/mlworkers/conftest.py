import json

import pytest

from annotation.assignment import work_units_open
from annotation.image_sources import SourcePolicy
from annotation.importing import manifest_import
from tests.mlworkers.chat_server import ChatServer
from tests.mlworkers.test_mllm_backend import judge_dirs  # noqa: F401  (a fixture shared with the job tests)


@pytest.fixture
def chat_server():
    """A scripted OpenAI-compatible chat-completions server on loopback; see chat_server.py."""
    server = ChatServer().start()
    yield server
    server.close()


@pytest.fixture
def imported(project, images_dir):
    lines = [json.dumps({"prompt": "two cats on a sofa", "image": f"{n}.png"}) for n in "abcd"]
    manifest_import(project=project, lines=lines, policy=SourcePolicy.from_settings(images_root=images_dir))
    work_units_open(project=project)
    return project
