"""An admin launches, watches, cancels and resumes a machine-annotation job from the browser."""
import json

import pytest

from annotation.image_sources import SourcePolicy
from annotation.importing import manifest_import
from annotation.models import PreferenceJudgment
from annotation.services import membership_set
from mlworkers import services
from mlworkers.models import AutoAnnotationJob
from tests.browser.conftest import sign_in
from tests.factories import UserFactory
from tests.mlworkers.chat_server import Reply

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def sign_in_as_admin(page, live_server, project):
    membership_set(project=project, user=UserFactory(username="pat"), role="admin")
    sign_in(page, live_server, "pat", "/projects/cats/auto-jobs/")


def test_admin_launches_watches_cancels_and_resumes_a_job(page, live_server, celery_worker_process, imported,
                                                          chat_server, images_dir):
    # three prompts of 4 images: 18 pairs in three GPU tasks of 6 (the test worker's chunk size)
    lines = [json.dumps({"prompt": f"prompt {p}", "image": f"{n}.png"}) for p in (2, 3) for n in "abcd"]
    manifest_import(project=imported, lines=lines, policy=SourcePolicy.from_settings(images_root=images_dir))
    services.machine_annotator_create(name="vlm", backend="openai_chat", model_ref="judge",
                                      parameters={"base_url": chat_server.base_url, "max_concurrency": 1})
    slow = {"delay": 0.4}
    chat_server.responder = lambda request: Reply.chat(  # the first answer is prose: one failed item
        json.dumps({"aesthetic": {"choice": "second", "rationale": "cleaner"}}) if len(chat_server.requests) > 1
        else "The second, I suppose.", delay=slow["delay"])
    sign_in_as_admin(page, live_server, imported)

    page.get_by_test_id("launch-kind").select_option("pairs")
    for key in ["prompt_following", "fidelity", "harmlessness"]:
        page.get_by_test_id(f"launch-aspect-{key}").uncheck()
    page.get_by_test_id("launch-submit").click()
    page.wait_for_url("**/auto-jobs/*/")
    page.wait_for_function("document.querySelector('[data-testid=job-done]').textContent !== '0'")
    assert AutoAnnotationJob.objects.get().chunks_done == 0  # counted while the first chunk runs
    page.get_by_test_id("job-cancel").click()
    page.wait_for_function("document.querySelector('[data-testid=job-status]').textContent === 'cancelling'")
    page.wait_for_function("document.querySelector('[data-testid=job-status]').textContent === 'cancelled'")
    job = AutoAnnotationJob.objects.get()
    stored_when_cancelled = PreferenceJudgment.objects.count()
    assert job.status == "cancelled" and 0 < stored_when_cancelled < 36
    page.wait_for_function("document.querySelectorAll('[data-testid=job-failures] tbody tr').length === 1")
    failure = page.get_by_test_id("job-failures").locator("tbody tr td")
    assert failure.nth(1).inner_text() == "aesthetic" and "not JSON" in failure.nth(2).inner_text()

    slow["delay"] = 0
    page.get_by_test_id("job-resume").click()
    page.wait_for_function("document.querySelector('[data-testid=job-status]').textContent === 'succeeded'",
                           timeout=60_000)

    assert PreferenceJudgment.objects.filter(source="machine").count() == 36
    assert page.get_by_test_id("job-failed").inner_text() == "0"
    assert page.get_by_test_id("job-total").inner_text() == str(36 - stored_when_cancelled)  # what was left
    assert page.get_by_test_id("job-rate").inner_text().endswith("items/s")
    assert page.get_by_test_id("job-life").inner_text().startswith("started by pat at ")


def test_the_launch_form_sends_samples_and_shows_a_refusal_naming_them(page, live_server, imported):
    greedy = services.machine_annotator_create(name="greedy", backend="openai_chat", model_ref="judge",
                                               parameters={"base_url": "http://127.0.0.1:9/v1"})
    sampler = services.machine_annotator_create(name="sampler", backend="openai_chat", model_ref="judge",
                                                parameters={"base_url": "http://127.0.0.1:9/v1", "temperature": 0.8})
    sign_in_as_admin(page, live_server, imported)
    page.get_by_test_id("launch-kind").select_option("pairs")
    page.get_by_test_id("launch-samples").fill("3")

    page.get_by_test_id("launch-annotator").select_option(value=str(greedy.pk))
    page.get_by_test_id("launch-submit").click()
    error = page.get_by_test_id("launch-error")
    error.wait_for()

    assert error.inner_text().startswith("Invalid input: samples: 3 samples would be 3 copies of one answer")
    assert not AutoAnnotationJob.objects.exists()

    page.get_by_test_id("launch-annotator").select_option(value=str(sampler.pk))
    page.get_by_test_id("launch-submit").click()
    page.wait_for_url("**/auto-jobs/*/")

    job = AutoAnnotationJob.objects.get()
    assert job.machine_annotator == sampler and job.kind == "pairs" and job.samples == 3
    assert page.get_by_test_id("job-kind").inner_text() == "Judge pairs per aspect, both orders, 3 samples each"
