"""`make demo` opens on results: after signing in, the researcher's home says where to look, and
the simulated crowd's report and export are there, finished."""
import pytest
from django.core.management import call_command

from tests.annotation.test_demo import demo_settings, drawn_demo, read_credentials  # noqa: F401
from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_researchers_first_screen_points_at_the_simulated_crowds_report_and_export(
        page, live_server, demo_settings):  # noqa: F811
    call_command("demo", "--no-serve", verbosity=0)
    password = read_credentials(demo_settings)["researcher"]

    sign_in(page, live_server, "researcher", "/", password=password)

    where = page.get_by_test_id("where-to-look")
    assert "Where to look" in where.inner_text()
    assert "Simulated crowd (demo data)" in page.get_by_test_id("results-simulated-crowd").inner_text()
    page.get_by_test_id("report-link-simulated-crowd").click()
    page.wait_for_url("**/filter-runs/*/")
    assert page.get_by_test_id("run-status").inner_text() == "succeeded"
    assert page.get_by_test_id("run-raters-kept").inner_text() == "12 of 12"
    assert int(page.get_by_test_id("run-kept").inner_text()) > 0

    page.go_back()
    page.get_by_test_id("export-link-simulated-crowd").click()
    page.wait_for_url("**/exports/*/")
    assert page.get_by_test_id("export-status").inner_text() == "succeeded"


def test_an_annotators_first_screen_shows_their_task_types_in_the_demo_project(
        page, live_server, demo_settings):  # noqa: F811
    call_command("demo", "--no-serve", verbosity=0)
    password = read_credentials(demo_settings)["annotator3"]

    sign_in(page, live_server, "annotator3", "/", password=password)

    assert page.get_by_test_id("where-to-start").is_visible()
    assert page.get_by_test_id("where-to-look").count() == 0
    for task_type in ("pairwise", "aspect_score", "personal_rating", "artifact_flag"):
        assert page.get_by_test_id(f"task-link-demo-{task_type}").is_visible()
    assert page.get_by_test_id("left-demo-pairwise").inner_text() == "300"
    assert page.get_by_test_id("project-simulated-crowd").count() == 0
