"""The filter-run and export forms in Chromium, at desktop and phone width: runs and exports started
from the controls, and a refusal shown next to the field it names with what was typed kept."""
import pytest

from curation.models import DatasetExport, FilterRun
from curation.rules import FilterRules
from tests.browser.conftest import sign_in
from tests.curation.export_data import build_export_data

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


@pytest.fixture(params=list(WIDTHS))
def sized(request, page):
    page.set_viewport_size(WIDTHS[request.param])
    return page


def assert_fits(page, testid: str) -> None:
    """The form needs no sideways scrolling at this width."""
    form = page.get_by_test_id(testid)
    box = form.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= page.viewport_size["width"]
    assert form.evaluate("(f) => f.scrollWidth <= f.clientWidth")


def test_a_filter_run_started_from_the_controls_stores_the_rules_chosen(sized, live_server, project, researcher):
    page = sized
    sign_in(page, live_server, "rita", "/projects/cats/filter-runs/")
    assert_fits(page, "filter-form")

    page.get_by_test_id("filter-name").fill("by-majority")
    page.get_by_label("Consensus consensus").select_option("majority")
    page.get_by_label("Min rater agreement").fill("0.6")
    page.get_by_label("Min confidence").fill("0.7")
    page.get_by_label("Drop ties").check()
    page.get_by_test_id("filter-submit").click()
    page.wait_for_url("**/filter-runs/*/")

    run = FilterRun.objects.get(project=project, name="by-majority")
    assert page.url.endswith(f"/filter-runs/{run.pk}/")
    assert run.rules == {**FilterRules().as_json(), "consensus": "majority", "min_rater_agreement": 0.6,
                         "min_confidence": 0.7, "drop_ties": True}


def test_a_bad_number_is_refused_next_to_its_field_with_the_values_kept(sized, live_server, project, researcher):
    page = sized
    sign_in(page, live_server, "rita", "/projects/cats/filter-runs/")

    page.get_by_test_id("rules-consensus").select_option("glad")
    page.get_by_test_id("rules-min_confidence").fill("3")
    page.get_by_test_id("rules-seed").fill("11")
    page.get_by_test_id("filter-submit").click()

    error = page.get_by_test_id("setting-min_confidence").get_by_test_id("rules-min_confidence-error")
    error.wait_for()
    assert error.inner_text() == "must lie between 0 and 1 (got 3)"
    assert page.get_by_test_id("rules-min_confidence").get_attribute("aria-invalid") == "true"
    assert "Min confidence: must lie between 0 and 1" in page.get_by_test_id("filter-error").inner_text()
    assert page.get_by_test_id("rules-min_confidence").input_value() == "3"
    assert page.get_by_test_id("rules-consensus").input_value() == "glad"
    assert page.get_by_test_id("rules-seed").input_value() == "11"
    assert not FilterRun.objects.exists()
    assert_fits(page, "filter-form")


def test_an_export_started_from_the_form_has_the_format_container_and_options_chosen(
        sized, live_server, project, researcher):
    page = sized
    data = build_export_data(project)
    sign_in(page, live_server, "rita", "/projects/cats/exports/")
    assert_fits(page, "export-form")

    page.get_by_test_id("export-format").select_option("pamela")
    assert page.get_by_test_id("setting-unseen_people").is_visible()
    assert page.get_by_test_id("setting-rows").is_hidden()  # pickapic's alone
    page.get_by_test_id("export-format").select_option("trl")
    assert page.get_by_test_id("setting-unseen_people").is_hidden()
    assert page.get_by_test_id("setting-aspect").is_visible()
    assert "Read by pickapic, trl only." in page.get_by_test_id("setting-aspect").inner_text()

    page.get_by_test_id("export-container").select_option("jsonl")
    page.get_by_test_id("export-run").select_option(str(data.run.pk))
    page.get_by_test_id("options-images").select_option("reference")
    page.get_by_test_id("options-rows_per_shard").fill("500")
    page.get_by_test_id("export-submit").click()
    page.wait_for_url("**/exports/*/")

    export = DatasetExport.objects.get(project=project)
    assert page.url.endswith(f"/exports/{export.pk}/")
    assert (export.format, export.container, export.filter_run_id) == ("trl", "jsonl", data.run.pk)
    assert export.options["images"] == "reference" and export.options["rows_per_shard"] == 500
