"""Crowd-platform participants in Chromium, at 1440x900 and 390x844: two people open a Prolific-style
study link, work until their quota is done and get the completion code, then are sent to the
completion URL; one of them closes the tab half way and comes back through the link."""
import json

import pytest

from annotation.assignment import work_units_open
from annotation.image_sources import SourcePolicy
from annotation.importing import manifest_import
from annotation.models import Assignment, PreferenceJudgment, StudyParticipant
from annotation.services import project_update
from annotation.studies import study_link_create
from tests.browser.conftest import polling_without_eval, sign_in
from tests.conftest import image_bytes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
CODE = "C7X2K9QD"
COMPLETION_URL = f"https://app.prolific.com/submissions/complete?cc={CODE}"
QUOTA = 3
VIEWPORTS = {"desktop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}


@pytest.fixture
def study(project, researcher, tmp_path, settings):
    """`cats`, pairwise, 3 prompts x 3 real images (9 pairs), overlap 2, and a Prolific study link
    with a quota of 3 units."""
    settings.IMPORT_PREVIEW_LONG_SIDE = 128
    lines = []
    for p, text in enumerate(["two red squares", "a blue circle", "a green triangle"]):
        for i in range(3):
            name = f"p{p}-{i}.png"
            (tmp_path / name).write_bytes(image_bytes(color=(60 * i, 40 * p, 200), size=(320, 240)))
            lines.append(json.dumps({"prompt": text, "image": name}))
    manifest_import(project=project, lines=lines, policy=SourcePolicy.from_settings(images_root=tmp_path))
    project_update(project=project, task_types=["pairwise"], overlap=2, gold_rate=0.0)
    work_units_open(project=project)
    return study_link_create(project=project, actor=researcher, task_type="pairwise", quota=QUOTA,
                             completion_code=CODE, completion_url=COMPLETION_URL)


def open_link(chromium, live_server, link, pid, viewport):
    """A fresh browser (its own cookies and storage) that opened the study link as `pid`."""
    context = chromium.new_context(viewport=viewport, has_touch=viewport["width"] < 600)
    # The platform is out of reach here: its completion page is answered locally.
    context.route("https://app.prolific.com/**",
                  lambda route: route.fulfill(status=200, content_type="text/html", body="<p>Prolific</p>"))
    page = polling_without_eval(context.new_page())
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/join/{link.token}/?PROLIFIC_PID={pid}&STUDY_ID=st-1&SESSION_ID=se-{pid[:4]}")
    page.wait_for_url("**/work/cats/pairwise/")
    page.wait_for_function("window.workspace !== undefined")
    page.evaluate("window.workspace.ready")
    return context, page


def answer_one(page, viewport):
    """Answers the unit on screen (a key on the desktop, a tap on the phone) and waits until the
    next unit, or the completion screen, is on screen."""
    unit = page.evaluate("window.workspace.currentUnit()")
    assert unit is not None, "no unit on screen"
    if viewport["width"] < 600:
        page.get_by_test_id("choose-left").tap()
    else:
        page.keyboard.press("1")
    page.wait_for_function(
        "(before) => { const unit = window.workspace.currentUnit();"
        " return (unit && unit.assignment !== before)"
        " || document.querySelector('[data-testid=completion]') !== null; }",
        arg=unit["assignment"])
    return unit["assignment"]


def expect_completion(page):
    """The completion screen shows the code once every answer is acknowledged, then the platform's
    completion URL opens."""
    page.get_by_test_id("completion").wait_for()
    assert page.get_by_test_id("completion-code").inner_text() == CODE
    assert page.evaluate("window.workspace.queueLength()") == 0  # only shown once the queue drained
    assert page.get_by_test_id("completion").get_attribute("data-state") == "quota_done"
    assert page.get_by_test_id("completion-link").get_attribute("href") == COMPLETION_URL
    page.wait_for_url(COMPLETION_URL)


@pytest.mark.parametrize("screen", list(VIEWPORTS))
def test_two_participants_work_to_their_quota_and_get_the_completion_code(chromium, live_server, study, screen):
    viewport = VIEWPORTS[screen]
    pid_a, pid_b = "60a1b2c3d4e5f6a7b8c9d0e1", "60ffeeddccbbaa9988776655"

    # A answers one unit, then closes the tab (and the browser with it) with the rest unanswered.
    context_a, page_a = open_link(chromium, live_server, study, pid_a, viewport)
    name_a = page_a.get_by_test_id("username").inner_text()
    first = answer_one(page_a, viewport)
    page_a.evaluate("window.workspace.flush()")
    context_a.close()

    # B works through the whole quota in one go.
    context_b, page_b = open_link(chromium, live_server, study, pid_b, viewport)
    answered_b = [answer_one(page_b, viewport) for _ in range(QUOTA)]
    expect_completion(page_b)
    context_b.close()

    # A comes back through the link in a new browser: the same person, with the units they held.
    context_a, page_a = open_link(chromium, live_server, study, pid_a, viewport)
    assert page_a.get_by_test_id("username").inner_text() == name_a
    participant_a = StudyParticipant.objects.get(participant_id=pid_a)
    held = set(Assignment.objects.filter(annotator=participant_a.user, status="active").values_list("id", flat=True))
    assert len(held) == QUOTA - 1 and page_a.evaluate("window.workspace.currentUnit().assignment") in held
    answered_a = [first] + [answer_one(page_a, viewport) for _ in range(QUOTA - 1)]
    expect_completion(page_a)
    context_a.close()

    for pid, answered in ((pid_a, answered_a), (pid_b, answered_b)):
        participant = StudyParticipant.objects.get(participant_id=pid)
        judged = PreferenceJudgment.objects.filter(annotator=participant.user, retracted_at__isnull=True)
        assert sorted(judged.values_list("submission__assignment_id", flat=True)) == sorted(answered)
        assert Assignment.objects.filter(annotator=participant.user).exclude(status="completed").count() == 0
        assert participant.completed_at is not None and pid not in participant.user.username
    assert StudyParticipant.objects.count() == 2

    # The researcher sees both on the link's page, done and completed.
    context = chromium.new_context(viewport=viewport)
    page = polling_without_eval(context.new_page())
    sign_in(page, live_server, "rita", f"/projects/cats/study-links/{study.pk}/")
    for pid in (pid_a, pid_b):
        row = page.get_by_test_id(f"participant-{StudyParticipant.objects.get(participant_id=pid).pk}")
        assert row.get_attribute("data-status") == "completed"
        assert row.get_by_test_id("participant-judged").inner_text() == f"{QUOTA} / {QUOTA}"
    context.close()
