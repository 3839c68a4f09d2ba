"""A researcher switches a project to adaptive collection on its settings page and follows it on
the progress page, with the refresh on a real Celery worker and a simulated crowd judging through
the real lease and submit services (curation/crowd_replay.py)."""
import dataclasses

import pytest

from annotation.models import AdaptiveSnapshot, PreferenceJudgment, Project
from curation.adaptive_simulation import crowd_world
from curation.crowd_replay import replay, replay_project
from curation.simulation import COMPOSITIONS
from tests.browser.conftest import polling_without_eval, sign_in
from tests.browser.test_campaign_pages import VIEWPORTS, assert_fits_the_width
from tests.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_a_researcher_switches_to_adaptive_collection_and_follows_it_on_the_progress_page(
        chromium, live_server, celery_worker_process, researcher, settings, viewport):
    settings.ADAPTIVE_REFRESH_EVERY_JUDGMENTS = 10**9  # the crowd below runs the refresh on its own schedule
    world = crowd_world(dataclasses.replace(COMPOSITIONS["honest"], units=60), seed=5)
    target = replay_project(world, slug="sunsets", creator=researcher, overlap=5)
    context = chromium.new_context(viewport=VIEWPORTS[viewport])
    page = polling_without_eval(context.new_page())
    page.set_default_timeout(15_000)
    sign_in(page, live_server, "rita", "/projects/sunsets/settings/")

    page.get_by_test_id("field-collection").select_option("adaptive")
    page.get_by_test_id("field-min_votes").fill("6")
    page.get_by_test_id("field-max_votes").fill("4")
    page.get_by_test_id("field-judgment_budget").fill("100")  # below 6 x 60 units, and min above max
    page.get_by_test_id("project-save").click()
    assert "must not exceed max_votes (4)" in page.get_by_test_id("error-min_votes").inner_text()
    assert page.get_by_test_id("field-max_votes").input_value() == "4"  # what was typed is kept
    assert Project.objects.get(slug="sunsets").collection == "fixed"

    page.get_by_test_id("field-min_votes").fill("2")
    page.get_by_test_id("field-max_votes").fill("9")
    page.get_by_test_id("field-confidence_target").fill("0.95")
    page.get_by_test_id("field-judgment_budget").fill("")
    page.get_by_test_id("project-save").click()
    page.wait_for_selector("[data-testid=flash]")
    assert "Settings saved" in page.get_by_test_id("flash").inner_text()
    project = Project.objects.get(slug="sunsets")
    assert (project.collection, project.min_votes, project.max_votes) == ("adaptive", 2, 9)
    # the switch queued a refresh, which the worker ran
    wait_for(lambda: AdaptiveSnapshot.objects.filter(project=project).exists(), timeout=60,
             what="the refresh queued by switching to adaptive")

    run = replay(target, seed=5, budget=5 * world.n_units, refresh_every=60)
    spent = PreferenceJudgment.objects.filter(project=project, source="human").count()
    assert spent == run.judgments and 2 * world.n_units < spent <= 5 * world.n_units

    page.goto(f"{live_server.url}/projects/sunsets/progress/")
    section = page.get_by_test_id("progress-adaptive")
    assert "2 to 9 human votes" in section.inner_text()
    assert page.locator("[data-adaptive=judgments-spent]").inner_text() == str(spent)
    closed = int(section.locator("strong").first.inner_text())
    assert 0 < closed <= world.n_units
    estimated = float(page.locator("[data-adaptive=estimated-accuracy]").inner_text())
    assert 0.5 < estimated <= 1
    histogram = page.locator("[data-adaptive=histogram] tbody tr")
    assert histogram.count() == 8
    curve = page.locator("[data-adaptive=curve] tbody tr")
    assert curve.count() == AdaptiveSnapshot.objects.filter(project=project).count() >= 3
    assert_fits_the_width(page)
    context.close()
