"""An annotator works through each task type with the keyboard alone, in Chromium."""
import json

import pytest

from annotation.assignment import work_units_open
from annotation.image_sources import SourcePolicy
from annotation.importing import manifest_import
from annotation.models import (
    ArtifactFlag, AspectScore, Assignment, PersonalRating, PreferenceJudgment, Submission, TaskType,
)
from annotation.services import membership_set, project_update
from tests.browser.conftest import PASSWORD, polling_without_eval
from tests.conftest import image_bytes
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
HOSTILE_PROMPT = 'three cats <img src=x onerror="window.pwned=1"><script>window.pwned=1</script>'


@pytest.fixture
def campaign(project, tmp_path, settings):
    """`cats` with every task type on, 3 prompts x 3 real images, overlap 1, and annotator anna."""
    settings.IMPORT_PREVIEW_LONG_SIDE = 128
    lines = []
    for p, text in enumerate(["two red squares", "a blue circle", HOSTILE_PROMPT]):
        for i in range(3):
            name = f"p{p}-{i}.png"
            (tmp_path / name).write_bytes(image_bytes(color=(60 * i, 40 * p, 200), size=(320, 240)))
            lines.append(json.dumps({"prompt": text, "image": name}))
    manifest_import(project=project, lines=lines, policy=SourcePolicy.from_settings(images_root=tmp_path))
    project_update(project=project, task_types=[t.value for t in TaskType], overlap=1, gold_rate=0.0)
    work_units_open(project=project)
    anna = UserFactory(username="anna")
    membership_set(project=project, user=anna, role="annotator")
    return project


def sign_in(page, live_server, next_path):
    page.goto(f"{live_server.url}/accounts/login/?next={next_path}")
    page.get_by_test_id("login-username").focus()
    page.keyboard.type("anna")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"**{next_path}")


def open_workspace(page, live_server, task_type):
    sign_in(page, live_server, f"/work/cats/{task_type}/")
    page.wait_for_function("window.workspace !== undefined")
    page.evaluate("window.workspace.ready")


def current_unit(page):
    return page.evaluate("window.workspace.currentUnit()")


def drain(page):
    page.evaluate("window.workspace.flush()")
    page.wait_for_function("window.workspace.queueLength() === 0")


def test_pairwise_with_the_keyboard_records_sides_and_latency(page, live_server, campaign):
    open_workspace(page, live_server, "pairwise")
    shown = []
    for key in ["1", "ArrowRight", "t"]:
        unit = current_unit(page)
        shown.append((unit["assignment"], unit["images"][0]["id"], unit["images"][1]["id"]))
        page.wait_for_timeout(150)  # a person looks before choosing: latency must be > 0
        page.keyboard.press(key)
    drain(page)

    rows = {j.submission.assignment_id: j for j in PreferenceJudgment.objects.select_related("submission")}
    assert len(rows) == 3
    for (assignment_id, left, right), expected in zip(shown, ["left", "right", "tie"]):
        row = rows[assignment_id]
        assert row.left_image_id == left == Assignment.objects.get(id=assignment_id).left_image_id
        canonical = {"left": "a" if left < right else "b", "right": "a" if right < left else "b", "tie": "tie"}
        assert row.choice == canonical[expected]
        assert row.latency_ms >= 100 and row.annotator.username == "anna"


def test_aspect_scores_with_the_keyboard(page, live_server, campaign):
    open_workspace(page, live_server, "aspect_score")
    for digit in "4321":
        page.keyboard.press(digit)
    page.keyboard.press("r")
    page.keyboard.type("colours are off")
    page.keyboard.press("Escape")
    page.keyboard.press("Enter")
    drain(page)

    scores = {s.aspect: s.value for s in AspectScore.objects.all()}
    assert scores == {"prompt_following": 4, "aesthetic": 3, "fidelity": 2, "harmlessness": 1}
    assert set(AspectScore.objects.values_list("rationale", flat=True)) == {"colours are off"}


def test_personal_rating_starts_with_onboarding_then_rates_with_one_key(page, live_server, campaign):
    open_workspace(page, live_server, "personal_rating")
    form = page.get_by_test_id("onboarding-form")
    assert form.is_visible()
    page.get_by_test_id("consent").focus()
    page.keyboard.press("Space")
    page.get_by_test_id("age-band").select_option("25-34")
    page.get_by_test_id("onboarding-submit").focus()
    page.keyboard.press("Enter")
    page.wait_for_function("window.workspace.currentUnit() !== null")
    page.keyboard.press("7")
    drain(page)

    rating = PersonalRating.objects.get()
    assert rating.value == 7
    profile = rating.annotator.annotator_profile
    assert profile.consent_at is not None and profile.age_band == "25-34"


def test_artifact_flag_with_reason_keys(page, live_server, campaign):
    open_workspace(page, live_server, "artifact_flag")
    page.keyboard.press("2")  # hands
    page.keyboard.press("4")  # text
    page.keyboard.press("a")
    page.keyboard.press("f")
    drain(page)

    flags = list(ArtifactFlag.objects.order_by("id").values_list("has_artifacts", "reasons"))
    assert flags == [(True, ["hands", "text"]), (False, [])]


def test_nothing_is_lost_when_the_network_drops_mid_submit(page, live_server, campaign):
    open_workspace(page, live_server, "pairwise")
    page.context.set_offline(True)
    for key in ["1", "2", "3"]:
        page.keyboard.press(key)
    page.wait_for_function("window.workspace.queueLength() === 3")
    assert Submission.objects.count() == 0
    assert page.get_by_test_id("pending-count").inner_text() == "3"

    page.context.set_offline(False)
    page.wait_for_function("window.workspace.queueLength() === 0", timeout=30_000)

    assert PreferenceJudgment.objects.count() == 3 and Submission.objects.count() == 3


def test_a_reload_mid_queue_sends_the_queue_and_resumes(page, live_server, campaign):
    open_workspace(page, live_server, "pairwise")
    page.route("**/work/submit/", lambda route: route.abort())
    page.keyboard.press("1")
    page.keyboard.press("2")
    page.wait_for_function("window.workspace.queueLength() === 2")
    waiting = current_unit(page)["assignment"]

    page.unroute("**/work/submit/")
    page.reload()
    page.wait_for_function("window.workspace !== undefined")
    page.evaluate("window.workspace.ready")
    page.wait_for_function("window.workspace.queueLength() === 0", timeout=30_000)

    assert Submission.objects.count() == 2
    assert current_unit(page)["assignment"] == waiting


def test_undo_takes_back_the_last_answer_and_shows_the_unit_again(page, live_server, campaign):
    open_workspace(page, live_server, "pairwise")
    first = current_unit(page)["assignment"]
    page.keyboard.press("1")
    drain(page)
    page.keyboard.press("u")
    page.wait_for_function(f"window.workspace.currentUnit() && window.workspace.currentUnit().assignment === {first}")
    page.keyboard.press("2")
    drain(page)

    judgments = list(PreferenceJudgment.objects.order_by("id"))
    assert len(judgments) == 2 and judgments[0].retracted_at is not None and judgments[1].retracted_at is None
    assert Submission.objects.filter(retracted_at__isnull=True).count() == 1


def test_html_in_a_prompt_is_shown_as_text(page, live_server, campaign):
    open_workspace(page, live_server, "artifact_flag")
    for _ in range(9):
        if "<script>" in page.get_by_test_id("prompt").inner_text():
            break
        page.keyboard.press("f")
        page.wait_for_function("window.workspace.currentUnit() !== null")

    assert page.get_by_test_id("prompt").inner_text() == HOSTILE_PROMPT
    assert page.evaluate("window.pwned") is None


def test_no_work_message_when_the_project_is_done(page, live_server, campaign):
    open_workspace(page, live_server, "personal_rating")
    page.get_by_test_id("consent").check()
    page.get_by_test_id("onboarding-submit").click()
    page.wait_for_function("window.workspace.currentUnit() !== null")
    for _ in range(9):
        shown = current_unit(page)["assignment"]
        page.keyboard.press("5")
        page.wait_for_function(f"""() => {{ const unit = window.workspace.currentUnit();
            return unit === null ? document.querySelector('[data-testid=no-work]').offsetParent !== null
                                 : unit.assignment !== {shown}; }}""")
    page.get_by_test_id("no-work").wait_for(state="visible")

    drain(page)
    assert PersonalRating.objects.count() == 9


def test_key_press_to_next_pair_painted_is_quick(page, live_server, campaign):
    open_workspace(page, live_server, "pairwise")
    page.keyboard.press("1")
    page.wait_for_function("performance.getEntriesByName('unit-painted').length >= 2")
    latency = page.evaluate("""() => {
        const press = performance.getEntriesByName('keypress').at(-1).startTime;
        const painted = performance.getEntriesByName('unit-painted').filter(m => m.startTime >= press)[0].startTime;
        return painted - press;
    }""")

    assert 0 <= latency < 250  # the figure itself (target 50 ms) comes from make bench


def test_the_page_fits_a_phone(chromium, live_server, campaign):
    context = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = polling_without_eval(context.new_page())
    open_workspace(page, live_server, "pairwise")

    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    left, right = page.get_by_test_id("image-left").bounding_box(), page.get_by_test_id("image-right").bounding_box()
    context.close()

    assert overflow <= 0
    assert right["y"] >= left["y"] + left["height"] - 1  # stacked, not squeezed side by side


def test_an_answer_sent_under_a_key_already_used_shows_the_conflict_to_the_annotator(page, live_server, campaign):
    open_workspace(page, live_server, "pairwise")
    page.keyboard.press("1")
    drain(page)
    stored = Submission.objects.get()

    def reuse_the_stored_key(route):
        """Sends the next answer under the stored answer's key (and names the page's key in the reply)."""
        body = json.loads(route.request.post_data)
        [item] = body["submissions"]
        own_key, item["idempotency_key"] = item["idempotency_key"], stored.idempotency_key
        response = route.fetch(post_data=json.dumps(body))
        route.fulfill(response=response, body=response.text().replace(stored.idempotency_key, own_key))

    page.route("**/work/submit/", reuse_the_stored_key)
    page.keyboard.press("2")
    page.wait_for_function("window.workspace.queueLength() === 0")  # answered 409: final, not retried

    alert = page.get_by_test_id("error-message")
    alert.get_by_text("conflicts with a different answer already stored under the same key").wait_for(state="visible")
    assert "Not saved" in alert.inner_text()
    assert Submission.objects.count() == 1
    assert list(PreferenceJudgment.objects.values_list("submission_id", flat=True)) == [stored.id]
