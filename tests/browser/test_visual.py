"""Every page of the demo, shot at 1440x900 and 390x844 and compared with its committed baseline
(tests/browser/baselines/; `make screenshots` rewrites them, see tests/browser/visual.py).

The demo is seeded as `make demo` seeds it, with Python's random seeded first so the simulated
crowd's layouts (which image is shown on the left) come out the same on every run; sequences are
reset so ids in page text ("Import #1") do too."""
import random

import pytest
from django.core.management import call_command

from curation.models import DatasetExport, FilterRun
from tests.annotation.test_demo import demo_settings, drawn_demo, read_credentials  # noqa: F401
from tests.browser.conftest import polling_without_eval, sign_in
from tests.browser.visual import SIZES, assert_matches_baseline

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, reset_sequences=True)]

# (name, who, path, what to wait for once loaded)
RESEARCHER_PAGES = [
    ("home-researcher", "/", "[data-testid=where-to-look]"),
    ("project-form", "/projects/new/", "form"),
    ("imports", "/projects/demo/imports/", "[data-testid=import-form]"),
    ("members", "/projects/simulated-crowd/members/", "[data-testid=members-table]"),
    ("progress", "/projects/simulated-crowd/progress/", "main"),
    ("filter-runs", "/projects/simulated-crowd/filter-runs/", "[data-testid=filter-form]"),
    ("report", "{report}", "body[data-charts-drawn]"),
    ("exports", "/projects/simulated-crowd/exports/", "[data-testid=export-form]"),
    ("export", "{export}", "[data-testid=export-status]"),
]
ADMIN_PAGES = [("auto-jobs", "/projects/demo/auto-jobs/", "main")]
WORKSPACES = ["pairwise", "aspect_score", "personal_rating", "artifact_flag"]


@pytest.fixture
def demo(demo_settings):  # noqa: F811
    random.seed(20261130)
    call_command("demo", "--no-serve", verbosity=0)
    return read_credentials(demo_settings)


def open_as(chromium, live_server, size, username, password, first_path):
    context = chromium.new_context(viewport=SIZES[size], has_touch=size == "phone", reduced_motion="reduce")
    page = polling_without_eval(context.new_page())
    page.set_default_timeout(20_000)
    sign_in(page, live_server, username, first_path, password=password)
    return context, page


@pytest.mark.parametrize("size", list(SIZES))
def test_every_researcher_and_admin_page_matches_its_baseline(chromium, live_server, demo, size):
    run = FilterRun.objects.get(project__slug="simulated-crowd")
    export = DatasetExport.objects.get(project__slug="simulated-crowd")
    paths = {"report": f"/filter-runs/{run.pk}/", "export": f"/exports/{export.pk}/"}
    failures = []
    for username, pages in (("researcher", RESEARCHER_PAGES), ("admin", ADMIN_PAGES)):
        context, page = open_as(chromium, live_server, size, username, demo[username], "/")
        for name, path, ready in pages:
            response = page.goto(live_server.url + path.format(**paths))
            assert response.status == 200, f"{name}: {response.status} at {page.url}"
            page.wait_for_selector(ready, state="attached")
            page.wait_for_load_state("networkidle")
            try:
                assert_matches_baseline(page, f"{name}-{size}")
            except AssertionError as exc:
                failures.append(str(exc))
        context.close()
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("size", list(SIZES))
def test_every_workspace_and_the_annotators_home_match_their_baselines(chromium, live_server, demo, size):
    context, page = open_as(chromium, live_server, size, "annotator1", demo["annotator1"], "/")
    failures = []
    page.wait_for_selector("[data-testid=where-to-start]")
    shots = [("home-annotator", None)] + [(f"workspace-{task_type}", task_type) for task_type in WORKSPACES]
    for name, task_type in shots:
        if task_type:
            random.seed(7)  # which image of the first pair the server puts on the left
            page.goto(f"{live_server.url}/work/demo/{task_type}/")
            page.wait_for_function("window.workspace !== undefined")
            page.evaluate("window.workspace.ready")
            page.wait_for_function("[...document.images].every(image => image.complete)")
        try:
            assert_matches_baseline(page, f"{name}-{size}")
        except AssertionError as exc:
            failures.append(str(exc))
    context.close()
    assert not failures, "\n".join(failures)
