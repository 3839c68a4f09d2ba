"""A researcher runs a filter from the browser, reads the report and sees why units were dropped."""
import pytest

from tests.browser.conftest import sign_in
from tests.curation.test_filter_runs import simulated_crowd

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_researcher_runs_a_filter_and_reads_why_units_were_dropped(page, live_server, celery_worker_process,
                                                                    project, researcher):
    simulated_crowd(project, units=30)
    sign_in(page, live_server, "rita", "/projects/cats/filter-runs/")

    page.get_by_test_id("filter-name").fill("strict")
    page.get_by_test_id("rules-advanced-toggle").click()
    page.get_by_test_id("filter-rules").fill('{"min_judgments": 6, "exclude_position_biased": true, "min_rater_agreement": 0.55}')
    page.get_by_test_id("filter-submit").click()
    page.wait_for_url("**/filter-runs/*/")
    page.get_by_test_id("run-dropped").wait_for(timeout=60_000)

    assert page.get_by_test_id("run-status").inner_text() == "succeeded"
    assert page.get_by_test_id("run-dropped").inner_text() == "30"
    assert "position bias" in page.get_by_test_id("run-rater-lefty").inner_text()
    first_dropped = page.locator("[data-testid^=dropped-]").first
    assert "at least 6 needed" in first_dropped.inner_text()
    page.wait_for_selector("body[data-charts-drawn]")
    labels = page.eval_on_selector_all('[data-chart="reliability"] g.mark-text.role-mark text',
                                       "(texts) => texts.map((t) => t.textContent)")
    names = [name for label in labels for name in label.split(", ")]
    assert len(names) == 7 and {"lefty", "clicker"} <= set(names)  # every annotator named on the chart


def test_bad_rules_are_refused_in_the_page(page, live_server, project, researcher):
    sign_in(page, live_server, "rita", "/projects/cats/filter-runs/")

    page.get_by_test_id("rules-advanced-toggle").click()
    page.get_by_test_id("filter-rules").fill('{"min_confidence": 3}')
    page.get_by_test_id("filter-submit").click()

    page.get_by_test_id("filter-error").wait_for(state="visible")
    assert "min_confidence" in page.get_by_test_id("filter-error").inner_text()
