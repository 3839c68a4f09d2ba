"""A researcher starts an export from the browser, watches it finish and downloads a file."""
import pytest

from tests.browser.conftest import sign_in
from tests.curation.export_data import build_export_data

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_researcher_exports_a_dataset_watches_it_and_downloads_a_file(page, live_server, celery_worker_process,
                                                                      project, researcher):
    data = build_export_data(project)
    sign_in(page, live_server, "rita", "/projects/cats/exports/")

    page.get_by_test_id("export-format").select_option("trl")
    page.get_by_test_id("export-run").select_option(str(data.run.pk))
    page.get_by_test_id("export-submit").click()
    page.wait_for_url("**/exports/*/")
    page.get_by_test_id("export-archive").wait_for(state="visible", timeout=60_000)

    assert page.get_by_test_id("export-status").inner_text() == "succeeded"
    assert page.get_by_test_id("export-life").inner_text().startswith("started by rita at ")
    link = page.get_by_test_id("export-file-manifest.json")
    with page.expect_download() as download:
        link.click()
    assert '"format": "trl"' in open(download.value.path()).read()
    assert page.locator("[data-testid^='export-file-data/default/train-']").count() == 1


def test_a_bad_option_is_refused_in_the_page(page, live_server, project, researcher):
    sign_in(page, live_server, "rita", "/projects/cats/exports/")

    page.get_by_test_id("options-advanced-toggle").click()
    page.get_by_test_id("export-options").fill('{"images": "inline"}')
    page.get_by_test_id("export-submit").click()

    page.get_by_test_id("export-error").wait_for(state="visible")
    assert "images: must be embed or reference" in page.get_by_test_id("export-error").inner_text()
