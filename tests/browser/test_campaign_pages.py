"""A researcher runs a campaign from the browser, at desktop and phone width: a new project from
an empty platform, and a manifest upload with bad lines."""
import json

import pytest

from annotation.models import ImportJob, Project
from annotation.services import import_job_run
from tests.browser.conftest import polling_without_eval, sign_in
from tests.conftest import image_bytes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VIEWPORTS = {"desktop": {"width": 1366, "height": 768}, "phone": {"width": 390, "height": 844}}


@pytest.fixture(params=list(VIEWPORTS))
def sized_page(request, chromium):
    context = chromium.new_context(viewport=VIEWPORTS[request.param], accept_downloads=True)
    page = polling_without_eval(context.new_page())
    page.set_default_timeout(15_000)
    yield page
    context.close()


def assert_fits_the_width(page) -> None:
    """Nothing makes the page scroll sideways (wide tables scroll inside their own box)."""
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    if overflow > 0:
        widest = page.evaluate("""() => [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
            .slice(0, 3).map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : '')
                             + (e.dataset.testid ? '[' + e.dataset.testid + ']' : ''))""")
        raise AssertionError(f"{page.url} is {overflow}px wider than the window; sticking out: {widest}")


def test_a_researcher_creates_a_project_on_an_empty_platform_and_finds_it_at_home(sized_page, live_server,
                                                                                  researcher):
    page = sized_page
    sign_in(page, live_server, "rita", "/")
    assert page.get_by_test_id("no-projects").is_visible()
    page.get_by_test_id("new-project").click()
    page.wait_for_url("**/projects/new/")
    assert_fits_the_width(page)

    page.get_by_test_id("field-name").fill("Sunsets")
    page.get_by_test_id("field-slug").fill("sunsets")
    page.get_by_test_id("task-type-aspect_score").check()
    page.get_by_test_id("task-type-personal_rating").check()
    page.get_by_test_id("aspect-label-2").fill("Beauty")
    page.get_by_test_id("aspect-key-5").fill("colour")
    page.get_by_test_id("aspect-question-5").fill("Are the colours true?")
    page.get_by_test_id("field-lease_minutes").fill("45")
    page.get_by_test_id("field-overlap").fill("0")  # refused: shown beside the field, the rest kept
    page.get_by_test_id("field-instructions").fill("# Be kind\n\nPick the **nicer** sunset.")
    page.get_by_test_id("project-save").click()
    assert "1" in page.get_by_test_id("error-overlap").inner_text()
    assert page.get_by_test_id("field-name").input_value() == "Sunsets"

    page.get_by_test_id("field-overlap").fill("2")
    page.get_by_test_id("project-save").click()
    page.wait_for_url("**/projects/sunsets/imports/")
    assert "created" in page.get_by_test_id("flash").inner_text()

    project = Project.objects.get(slug="sunsets")
    assert project.task_types == ["pairwise", "aspect_score", "personal_rating"]
    assert project.overlap == 2 and project.lease_minutes == 45 and project.aspects[1]["label"] == "Beauty"
    assert project.aspect_keys[-1] == "colour"

    page.goto(f"{live_server.url}/projects/sunsets/settings/")
    assert page.locator("[data-testid=instructions-preview] h1").inner_text() == "Be kind"
    assert_fits_the_width(page)

    page.goto(f"{live_server.url}/")
    card = page.get_by_test_id("project-sunsets")
    assert "Sunsets" in card.inner_text()
    assert "0 of 0 units complete" in page.get_by_test_id("units-sunsets").inner_text()
    assert page.get_by_test_id("task-link-sunsets-personal_rating").is_visible()
    assert_fits_the_width(page)

    page.get_by_test_id("settings-link-sunsets").click()
    page.get_by_test_id("archive").click()
    page.wait_for_selector("[data-testid=archived-notice]")
    assert Project.objects.get(slug="sunsets").is_archived
    page.get_by_test_id("unarchive").click()
    page.wait_for_selector("[data-testid=archive]")
    assert not Project.objects.get(slug="sunsets").is_archived


def test_a_manifest_with_bad_lines_shows_them_in_a_table_and_as_csv(sized_page, live_server, researcher, project,
                                                                    settings, tmp_path):
    page = sized_page
    folder = tmp_path / "shots"
    folder.mkdir()
    for i, name in enumerate(["a.png", "b.png"]):
        (folder / name).write_bytes(image_bytes(color=(90 * i, 20, 200), size=(160, 120)))
    settings.IMPORT_LOCAL_ROOTS = [str(tmp_path)]
    settings.IMPORT_PREVIEW_LONG_SIDE = 64
    manifest = "\n".join([
        json.dumps({"prompt": "a sunset", "image": "a.png"}),
        json.dumps({"prompt": "a sunset", "image": "b.png"}),
        json.dumps({"prompt": "a sunset", "image": "nowhere.png"}),
        "{not json",
        json.dumps({"prompt": "", "image": "a.png"}),
    ]) + "\n"

    sign_in(page, live_server, "rita", "/projects/cats/imports/")
    assert_fits_the_width(page)
    page.get_by_test_id("field-manifest").set_input_files(
        {"name": "sunsets.jsonl", "mimeType": "application/jsonl", "buffer": manifest.encode()})
    page.get_by_test_id("field-images_root_base").select_option(str(tmp_path))
    page.get_by_test_id("field-images_root_below").fill("shots")
    page.get_by_test_id("import-start").click()
    page.wait_for_url("**/imports/*/")
    job = ImportJob.objects.get(project=project)
    # Queued, unless the session's test worker (started by an earlier test) took it already.
    assert page.get_by_test_id("import-status").inner_text() in ("queued", "running", "succeeded")

    import_job_run(job_id=job.pk)  # the worker's part (a no-op if a worker has it); the page notices by polling
    page.wait_for_selector("[data-testid=rejected-lines]")
    assert page.get_by_test_id("import-status").inner_text() == "succeeded"
    assert page.get_by_test_id("import-images").inner_text() == "2"
    rows = page.locator("[data-testid=rejected-lines] tbody tr").all_inner_texts()
    assert [row.split("\t")[:2] for row in rows] == [["3", "image"], ["4", ""], ["5", "prompt"]]
    assert "file not found" in rows[0]
    assert_fits_the_width(page)

    with page.expect_download() as download:
        page.get_by_test_id("rejected-csv").click()
    text = open(download.value.path(), encoding="utf-8").read()
    lines = text.splitlines()
    assert lines[0] == "line,field,reason" and len(lines) == 4
    assert lines[1].startswith("3,image,file not found")
