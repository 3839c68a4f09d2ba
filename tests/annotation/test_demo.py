"""The `make demo` content and command: procedural images with ground truth, idempotent seeding,
and (with a real web server and Celery worker) the --check start-up probe."""
import io
import json
import os
import random
import shutil
import stat
import time
from collections import Counter
from pathlib import Path

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import RequestFactory
from PIL import Image as PILImage

from annotation import demo_art
from annotation.importing import parse_line
from annotation.models import (
    Comparison, Image, MachineAnnotator, Membership, PreferenceJudgment, Project, Prompt, TaskType,
)
from tests.conftest import free_port

DEMO_USERNAMES = ["admin", "researcher", "annotator1", "annotator2", "annotator3"]


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
    settings.EXPORT_ROOT = str(tmp_path / "exports")
    settings.EXPORT_STAGING_DIR = str(tmp_path / "export-staging")
    shutil.copytree(drawn_demo.parent, settings.VAR_DIR / "demo-items")
    # The import sample is another drawing of the same kind; the session's saves drawing it per test.
    shutil.copytree(drawn_demo.parent, settings.VAR_DIR / "imports" / "sample")
    return settings


def read_credentials(settings) -> dict[str, str]:
    data = json.loads((settings.VAR_DIR / "demo-credentials.json").read_text())
    return {u["username"]: u["password"] for u in data["users"]}


def row_counts() -> dict[str, int]:
    from annotation.models import Assignment, Submission, WorkUnit
    from curation.models import DatasetExport, FilterRun

    models = [get_user_model(), Group, Project, Membership, Prompt, Image, Comparison, MachineAnnotator, WorkUnit,
              Assignment, Submission, PreferenceJudgment, FilterRun, DatasetExport]
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
    people = User.objects.exclude(username__startswith="sim-")  # the simulated crowd's own accounts
    assert sorted(people.values_list("username", flat=True)) == sorted(DEMO_USERNAMES)
    assert User.objects.get(username="admin").is_superuser
    assert User.objects.get(username="researcher").has_perm("annotation.add_project")
    project = Project.objects.get(slug="demo")
    assert sorted(project.task_types) == sorted(TaskType.values)
    roles = dict(project.memberships.values_list("user__username", "role"))
    assert roles["researcher"] == "researcher"
    assert roles["annotator1"] == roles["annotator2"] == roles["annotator3"] == "annotator"
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


# --- the whole flow: more annotators than the overlap, and a simulated crowd with results ---------

def judge_all_they_can(project, username) -> int:
    """Lease and answer (always "left") every pairwise unit the person is handed; returns how many."""
    from annotation.assignment import assignments_lease_next
    from annotation.judging import submissions_store

    membership = Membership.objects.select_related("project", "user").get(project=project, user__username=username)
    judged = 0
    while leased := assignments_lease_next(membership=membership, task_type=TaskType.PAIRWISE, count=10):
        outcomes = submissions_store(membership=membership, items=[
            {"idempotency_key": f"test-{username}-{a.id}", "assignment": a.id, "choice": "left"} for a in leased])
        assert {o.status for o in outcomes} == {"stored"}
        judged += len(leased)
    return judged


@pytest.mark.django_db
def test_the_demo_project_has_more_annotators_than_its_overlap(demo_settings):
    call_command("demo", "--no-serve", verbosity=0)

    project = Project.objects.get(slug="demo")
    annotators = project.memberships.filter(role="annotator", status="active").count()
    assert annotators == 3
    assert project.overlap < annotators


@pytest.mark.django_db
def test_demo_progress_remaining_is_what_the_annotators_can_still_take(demo_settings):
    from annotation.selectors import project_progress, work_progress

    call_command("demo", "--no-serve", verbosity=0)
    project = Project.objects.get(slug="demo")
    annotators = list(get_user_model().objects.filter(username__startswith="annotator").order_by("username"))

    def remaining() -> int:
        return next(r for r in project_progress(project=project)["task_types"]
                    if r["task_type"] == TaskType.PAIRWISE)["units_remaining"]

    def left(user) -> int:
        from django.core.cache import cache

        cache.clear()  # the project-wide count is cached for half a minute
        return work_progress(project=project, annotator=user, task_type=TaskType.PAIRWISE)["left_in_project"]

    assert remaining() == project.comparisons.count() == max(left(u) for u in annotators)
    judged = 0
    for annotator in annotators:  # one after another, each judging all they are handed
        judged += judge_all_they_can(project, annotator.username)
        assert remaining() == max(left(u) for u in annotators)

    assert judged == project.overlap * project.comparisons.count()
    assert remaining() == 0
    assert [left(u) for u in annotators] == [0, 0, 0]
    assert project_progress(project=project)["overlap_warning"] == ""


@pytest.mark.django_db
def test_progress_warns_when_the_overlap_asks_for_more_annotators_than_the_project_has(demo_settings):
    from annotation.selectors import project_progress
    from annotation.services import project_update

    call_command("demo", "--no-serve", verbosity=0)
    project = project_update(project=Project.objects.get(slug="demo"), overlap=4)

    warning = project_progress(project=project)["overlap_warning"]

    assert "wants 4 judgments" in warning and "3 active annotators" in warning


@pytest.mark.django_db
def test_demo_lowers_the_overlap_of_a_demo_project_seeded_with_more_than_its_annotators(demo_settings):
    from annotation.services import project_update

    call_command("demo", "--no-serve", verbosity=0)
    project_update(project=Project.objects.get(slug="demo"), overlap=3)  # what an older demo seeded

    call_command("demo", "--no-serve", verbosity=0)

    assert Project.objects.get(slug="demo").overlap == 2


@pytest.mark.django_db
def test_demo_seeds_a_project_labelled_simulated_whose_crowd_judged_every_pair(demo_settings):
    call_command("demo", "--no-serve", verbosity=0)

    project = Project.objects.get(slug="simulated-crowd")
    assert "simulated" in project.name.lower() and "simulated annotators" in project.instructions
    crowd = get_user_model().objects.filter(memberships__project=project, memberships__role="annotator")
    assert crowd.count() == 12 and project.overlap < 12
    assert all(u.username.startswith("sim-") and not u.has_usable_password() for u in crowd)
    assert {u.username.rsplit("-", 1)[0] for u in crowd} == {
        "sim-careful", "sim-sloppy", "sim-random-clicker", "sim-left-clicker"}
    judged = PreferenceJudgment.objects.filter(project=project, source="human", aspect="overall")
    assert judged.count() == project.overlap * project.comparisons.count()
    assert not judged.exclude(annotator__in=crowd).exists()


@pytest.mark.django_db
def test_demo_seeds_a_finished_default_filter_run_that_keeps_the_honest_simulated_raters(demo_settings):
    from curation.models import FilterRun
    from curation.rules import FilterRules

    call_command("demo", "--no-serve", verbosity=0)

    run = FilterRun.objects.get(project__slug="simulated-crowd")
    assert run.status == "succeeded" and run.rules == FilterRules().as_json()
    raters = {row["rater"]: row for row in run.summary["raters"]}
    honest = [name for name in raters if name.startswith(("sim-careful", "sim-sloppy"))]
    assert len(honest) == 8 and not any(raters[name]["excluded"] for name in honest)
    assert run.summary["kept"] > 0
    left_clickers = [row for name, row in raters.items() if name.startswith("sim-left-clicker")]
    assert [row["left_share"] for row in left_clickers] == [1.0, 1.0]  # the report shows them for what they are


@pytest.mark.django_db
def test_demo_seeds_a_finished_pickapic_export_of_the_run_whose_parquet_loads(demo_settings):
    import pyarrow.parquet as pq

    from curation.models import DatasetExport

    call_command("demo", "--no-serve", verbosity=0)

    export = DatasetExport.objects.select_related("filter_run").get(project__slug="simulated-crowd")
    assert export.status == "succeeded" and export.format == "pickapic"
    destination = Path(export.destination)
    assert Path(demo_settings.EXPORT_ROOT).resolve() in destination.resolve().parents
    manifest = json.loads((destination / "manifest.json").read_text())
    shards = [f["path"] for f in manifest["files"] if f["path"].endswith(".parquet")]
    assert len(shards) == 1
    table = pq.read_table(destination / shards[0])
    assert table.num_rows == export.rows_done == export.filter_run.summary["kept"]
    assert {"caption", "jpg_0", "jpg_1", "label_0", "label_1"} <= set(table.column_names)
    first = table.slice(0, 1).to_pylist()[0]
    assert first["jpg_0"][:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.django_db
def test_demo_check_verifies_the_seeded_run_and_export_and_fails_naming_a_missing_export(demo_settings):
    from curation.models import DatasetExport

    call_command("demo", "--no-serve", verbosity=0)
    out = io.StringIO()
    call_command("seed_simulated_crowd", check=True, stdout=out)
    said = out.getvalue()
    assert said.startswith("Seeded results checked.")
    assert "filter run default v1 kept" in said and "12 of 12 raters" in said

    shutil.rmtree(DatasetExport.objects.get(project__slug="simulated-crowd").destination)

    with pytest.raises(CommandError, match="no succeeded pickapic export whose manifest.json is on disk"):
        call_command("seed_simulated_crowd", check=True, verbosity=0)


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


@pytest.mark.django_db
def test_demo_draws_an_import_sample_that_imports_cleanly_from_its_server_folder(settings, tmp_path):
    from annotation.image_sources import SourcePolicy
    from annotation.importing import manifest_import
    from annotation.management.commands.demo import Command

    settings.VAR_DIR = tmp_path / "var"
    settings.MEDIA_ROOT = str(tmp_path / "media")  # not the run's shared media folder
    settings.IMPORT_PREVIEW_LONG_SIDE = 96
    command = Command()
    command.verbosity = 0
    command.seed_import_sample()
    sample = settings.VAR_DIR / "imports" / "sample"
    project = Project.objects.create(slug="try", name="Trying an import")

    with open(sample / demo_art.MANIFEST_NAME, "rb") as lines:
        summary = manifest_import(project=project, lines=lines,
                                  policy=SourcePolicy.from_settings(images_root=sample))

    lines = (sample / demo_art.MANIFEST_NAME).read_text().splitlines()
    assert summary.errors == [] and summary.images_created == len(lines) > 100
