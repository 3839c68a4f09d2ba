"""The `make demo` content and command: procedural images with ground truth, idempotent seeding,
and (with a real web server and Celery worker) the --check start-up probe."""
import json
import os
import random
import shutil
import stat
import time
from collections import Counter

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import RequestFactory
from PIL import Image as PILImage

from annotation import demo_art
from annotation.importing import parse_line
from annotation.models import Comparison, Image, MachineAnnotator, Membership, Project, Prompt, TaskType
from tests.conftest import free_port

DEMO_USERNAMES = ["admin", "researcher", "annotator1", "annotator2"]


def signs_in(username, password) -> bool:
    """Whether the login page would accept these (django-axes wants the request of a sign-in)."""
    return authenticate(RequestFactory().post("/accounts/login/"), username=username, password=password) is not None


@pytest.fixture(scope="session")
def drawn_demo(tmp_path_factory):
    """The demo images and manifest, drawn once for the whole session (about three seconds)."""
    out_dir = tmp_path_factory.mktemp("demo-items")
    return demo_art.write_demo_manifest(out_dir)


@pytest.fixture
def demo_settings(settings, tmp_path, drawn_demo, monkeypatch):
    """A fresh VAR_DIR and MEDIA_ROOT, with the session's drawing already in place so the
    command only imports; small previews and fast password hashing keep it quick. The model hub
    is a closed loopback port (as on a machine without it) and the model cache empty."""
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    settings.MODEL_CACHE_DIR = str(tmp_path / "model-cache")
    settings.VAR_DIR = tmp_path / "var"
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.IMPORT_PREVIEW_LONG_SIDE = 96
    shutil.copytree(drawn_demo.parent, settings.VAR_DIR / "demo-items")
    return settings


def read_credentials(settings) -> dict[str, str]:
    data = json.loads((settings.VAR_DIR / "demo-credentials.json").read_text())
    return {u["username"]: u["password"] for u in data["users"]}


def row_counts() -> dict[str, int]:
    models = [get_user_model(), Group, Project, Membership, Prompt, Image, Comparison, MachineAnnotator]
    return {m.__name__: m.objects.count() for m in models}


# --- demo_art ------------------------------------------------------------------------------

def test_demo_items_are_the_same_for_the_same_seed_and_differ_for_another():
    assert demo_art.demo_items(7) == demo_art.demo_items(7)
    assert [p.text for p in demo_art.demo_items(7)] != [p.text for p in demo_art.demo_items(8)]


def test_drawing_again_with_the_same_seed_gives_the_same_png_bytes(drawn_demo, tmp_path):
    lines = [json.loads(line) for line in drawn_demo.read_text().splitlines()]
    items = demo_art.demo_items(7)
    for index in (0, 1, 2, 25, 49):
        for variant, planned in enumerate(items[index].images):
            image = demo_art.draw_image(items[index], variant, random.Random(planned.seed))
            path = tmp_path / f"{index}-{variant}.png"
            image.save(path, "PNG")
            line = lines[index * 4 + variant]
            assert path.read_bytes() == (drawn_demo.parent / line["image"]).read_bytes()


def test_demo_items_are_about_fifty_prompts_with_four_generators_each():
    items = demo_art.demo_items()
    assert 45 <= len(items) <= 60
    assert len({p.text for p in items}) == len(items)
    assert {p.category for p in items} == {"counting", "colour", "composition"}
    for prompt in items:
        assert [i.generator for i in prompt.images] == ["demo-sd15", "demo-sdxl", "demo-flux", "demo-dalle"]
        assert any(i.faithful and i.artifact is None for i in prompt.images)


def test_some_demo_images_are_deliberately_wrong_or_artifacted_and_say_so_in_meta():
    images = [i for p in demo_art.demo_items() for i in p.images]
    mistakes = Counter(i.meta["mistake"] for i in images if not i.meta["faithful"])
    artifacts = Counter(i.meta["artifact"] for i in images if i.meta["artifact"])
    clean = sum(1 for i in images if i.meta["faithful"] and not i.meta["artifact"])
    assert clean >= len(images) * 0.6
    assert {"wrong_count", "wrong_colour"} <= set(mistakes)
    assert set(artifacts) == {"noise_blotch", "smear", "cutoff"}
    for image in images:
        assert image.meta["faithful"] == (image.meta["mistake"] is None)


def test_every_unfaithful_image_draws_a_scene_other_than_its_prompt_asks_for():
    for prompt in demo_art.demo_items():
        for image in prompt.images:
            assert (image.drawn == prompt.scene) == image.faithful


def test_manifest_lines_are_importable_and_point_at_512px_rgb_pngs(drawn_demo):
    lines = [line for line in drawn_demo.read_text().splitlines() if line.strip()]
    assert len(lines) == 4 * len(demo_art.demo_items())
    for number, raw in enumerate(lines, start=1):
        entry = parse_line(number, raw)
        assert entry.generator.startswith("demo-") and entry.seed is not None and entry.category
        assert set(entry.meta) >= {"faithful", "artifact"}
    first = json.loads(lines[0])
    with PILImage.open(drawn_demo.parent / first["image"]) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "RGB", (512, 512))


# --- the demo command -----------------------------------------------------------------------

@pytest.mark.django_db
def test_demo_no_serve_creates_users_project_items_and_credentials(demo_settings):
    call_command("demo", "--no-serve", verbosity=0)

    User = get_user_model()
    assert sorted(User.objects.values_list("username", flat=True)) == sorted(DEMO_USERNAMES)
    assert User.objects.get(username="admin").is_superuser
    assert User.objects.get(username="researcher").has_perm("annotation.add_project")
    project = Project.objects.get(slug="demo")
    assert sorted(project.task_types) == sorted(TaskType.values)
    roles = dict(project.memberships.values_list("user__username", "role"))
    assert roles["researcher"] == "researcher"
    assert roles["annotator1"] == roles["annotator2"] == "annotator"
    prompts = project.prompts.count()
    assert prompts >= 50
    assert project.images.count() == 4 * prompts
    assert project.comparisons.count() == 6 * prompts
    assert project.images.filter(meta__faithful=False).exists()

    path = demo_settings.VAR_DIR / "demo-credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for username, password in read_credentials(demo_settings).items():
        assert signs_in(username, password)


@pytest.mark.django_db
def test_demo_second_run_creates_nothing_and_keeps_the_passwords(demo_settings):
    call_command("demo", "--no-serve", verbosity=0)
    before, passwords = row_counts(), read_credentials(demo_settings)

    call_command("demo", "--no-serve", verbosity=0)

    assert row_counts() == before
    assert read_credentials(demo_settings) == passwords
    assert signs_in("annotator1", passwords["annotator1"])


@pytest.mark.django_db
def test_demo_resets_passwords_of_existing_users_when_the_credentials_file_is_gone(demo_settings):
    call_command("demo", "--no-serve", verbosity=0)
    old = read_credentials(demo_settings)
    (demo_settings.VAR_DIR / "demo-credentials.json").unlink()

    call_command("demo", "--no-serve", verbosity=0)

    new = read_credentials(demo_settings)
    assert set(new) == set(DEMO_USERNAMES)
    assert new["admin"] != old["admin"]
    assert signs_in("admin", new["admin"])
    assert not signs_in("admin", old["admin"])


@pytest.mark.django_db
def test_demo_seeds_the_catalogue_annotators_and_the_openai_chat_ones_point_at_local_servers(demo_settings, capsys):
    from mlworkers import catalogue

    call_command("demo", "--no-serve")

    judges = {a.name: a for a in MachineAnnotator.objects.all()}
    assert set(judges) == {entry.label for entry in catalogue.ENTRIES.values()}
    for entry in catalogue.ENTRIES.values():
        judge = judges[entry.label]
        assert (judge.backend, judge.model_ref, judge.parameters) == (
            entry.backend, entry.model_ref, entry.annotator_parameters())
    assert judges["MLLM judge on Ollama"].parameters["base_url"] == "http://localhost:11434/v1"
    assert judges["MLLM judge on llama.cpp's server"].parameters["base_url"] == "http://localhost:8080/v1"
    out = capsys.readouterr().out
    assert "the model hub was not reached" in out and "http://localhost:11434/v1" in out
    assert os.environ.get("HF_HUB_OFFLINE") is None  # seeding left the environment as it found it


@pytest.mark.django_db
def test_a_job_on_a_seeded_catalogue_annotator_fails_at_once_saying_the_hub_is_unreachable(demo_settings):
    from mlworkers import runner, services

    call_command("demo", "--no-serve", verbosity=0)
    judge = MachineAnnotator.objects.get(name="PickScore v1")
    job = services.auto_job_launch(project=Project.objects.get(slug="demo"), annotator=judge, kind="score",
                                   aspects=["overall"])
    started = time.monotonic()

    chunks = runner.auto_job_start(job_id=job.pk, send=False)

    job.refresh_from_db()
    assert chunks == [] and job.status == "failed"
    assert job.message.startswith(f"model hub unreachable: {os.environ['HF_ENDPOINT']}: ")
    assert time.monotonic() - started < 5


@pytest.mark.django_db
def test_the_demos_machine_annotation_page_offers_the_catalogue_judges_and_says_how_to_use_a_local_server(
        demo_settings):
    from django.test import Client

    call_command("demo", "--no-serve", verbosity=0)
    browser = Client()
    browser.force_login(get_user_model().objects.get(username="admin"))

    page = browser.get("/projects/demo/auto-jobs/").content.decode()

    assert "PickScore v1 (pickscore," in page and "MLLM judge on Ollama (openai_chat," in page
    for said in ("model hub unreachable", "http://localhost:11434/v1", "http://localhost:8080/v1", "base_url"):
        assert said in page


@pytest.mark.worker
@pytest.mark.django_db
def test_demo_check_starts_web_server_and_worker_and_stops_them(demo_settings, tmp_path, monkeypatch, capsys):
    # The children get their own database file and broker folder, away from other tests' workers.
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'children.sqlite3'}")
    monkeypatch.setenv("CELERY_BROKER_URL", "filesystem://localhost/")
    monkeypatch.setenv("CELERY_BROKER_FOLDER", str(tmp_path / "broker"))

    call_command("demo", "--check", "--addr", f"127.0.0.1:{free_port()}")

    out = capsys.readouterr().out
    assert "Demo check passed" in out
    assert "[worker]" in out and "[web]" in out
