import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.db import connection
from PIL import Image as PILImage
from rest_framework.test import APIClient

from tests.factories import MembershipFactory, ProjectFactory, UserFactory

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _empty_cache():
    """Each test starts with an empty cache (progress figures and sessions are cached)."""
    from django.core.cache import cache

    cache.clear()
    yield


# --- images and manifests ----------------------------------------------------------------

def image_bytes(color=(200, 30, 30), size=(64, 48), fmt="PNG") -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", size, color).save(out, fmt)
    return out.getvalue()


def write_manifest(path: Path, lines) -> Path:
    """`lines` holds dicts (written as JSON) or raw strings (written as they are)."""
    with open(path, "w") as handle:
        for line in lines:
            handle.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
    return path


@pytest.fixture
def images_dir(tmp_path):
    """A folder with four distinct small images, a.png .. d.png."""
    folder = tmp_path / "images"
    folder.mkdir()
    for i, name in enumerate("abcd"):
        (folder / f"{name}.png").write_bytes(image_bytes(color=(40 * i, 100, 255 - 40 * i), size=(640, 480)))
    return folder


# --- people and projects ----------------------------------------------------------------

@pytest.fixture
def researcher(db):
    from annotation.services import researcher_grant

    user = UserFactory(username="rita")
    researcher_grant(user=user)
    return user


@pytest.fixture
def project(researcher):
    from annotation.services import project_create

    return project_create(creator=researcher, slug="cats", name="Cats")


@pytest.fixture
def annotator(project):
    membership = MembershipFactory(project=project, user=UserFactory(username="anna"), role="annotator")
    return membership.user


@pytest.fixture
def outsider(db):
    """A member of another project only."""
    other = ProjectFactory(slug="other")
    return MembershipFactory(project=other, user=UserFactory(username="otto"), role="researcher").user


@pytest.fixture
def platform_admin(db):
    return UserFactory(username="ada", is_staff=True, is_superuser=True)


def client_for(user) -> APIClient:
    from rest_framework.authtoken.models import Token

    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


# --- loopback servers --------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def http_server():
    """A loopback HTTP server; set `server.routes[path] = (status, headers, body)`."""
    routes: dict[str, tuple[int, dict, bytes]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            status, headers, body = routes.get(self.path, (404, {}, b"not found"))
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.routes = routes
    server.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's standalone S3 server on loopback, reached over HTTP like any S3 endpoint."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_settings(settings, s3_endpoint):
    """Point boto3 and django-storages at the loopback S3 server, with a fresh bucket."""
    import uuid

    import boto3

    bucket = f"test-{uuid.uuid4().hex[:12]}"
    settings.AWS_S3_ENDPOINT_URL = s3_endpoint
    settings.AWS_ACCESS_KEY_ID = "testing"
    settings.AWS_SECRET_ACCESS_KEY = "testing"
    settings.AWS_S3_REGION_NAME = "us-east-1"
    settings.AWS_STORAGE_BUCKET_NAME = bucket
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket=bucket)
    return SimpleNamespace(settings=settings, client=client, bucket=bucket, endpoint=s3_endpoint)


# --- a real Celery worker ----------------------------------------------------------------

def _database_url_for_workers() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real `celery worker` process consuming the default and gpu queues against the test database.
    It may read images under pytest's temporary folders, as the tests' own settings allow."""
    # Small GPU tasks, so that tests see jobs of several chunks (cancel takes effect between them).
    env = dict(os.environ, DATABASE_URL=_database_url_for_workers(), PYTHONUNBUFFERED="1",
               IMPORT_LOCAL_ROOTS=str(tmp_path_factory.getbasetemp()), AUTO_JOB_CHUNK_ITEMS="6")
    # Messages left in a shared broker (Redis) by an earlier, interrupted run name rows that
    # no longer exist, or worse, rows with reused ids: start from an empty queue.
    subprocess.run([sys.executable, "-m", "celery", "-A", "config", "purge", "-f", "-Q", "default,gpu"],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=60)
    pool = WorkerPool(Path(os.environ["PREFSTUDIO_TEST_RUN_DIR"]), env)
    yield pool.start(beat=False, name="test")
    pool.stop_all()


def wait_for(predicate, timeout=60, interval=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# tests/workers.py needs the helpers above; private_workers is a fixture
from tests.workers import WorkerPool, private_workers  # noqa: E402,F401
