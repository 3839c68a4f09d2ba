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


# --- the workspace on every screen (issue 15) ----------------------------------------------------

def open_at(chromium, live_server, task_type, width, height, phone=False):
    """A fresh browser context of the given viewport, signed in on the task page; the caller closes it."""
    context = chromium.new_context(viewport={"width": width, "height": height}, is_mobile=phone, has_touch=phone)
    page = polling_without_eval(context.new_page())
    page.set_default_timeout(15_000)
    open_workspace(page, live_server, task_type)
    return context, page


def close_instructions(page):
    """The first visit opens the instructions over the page; read, they are closed with their button."""
    page.get_by_test_id("instructions-close").click()
    page.get_by_test_id("instructions-close").wait_for(state="hidden")


def box(page, test_id):
    return page.get_by_test_id(test_id).bounding_box()


def in_viewport(rect, page):
    size = page.viewport_size
    return (rect["x"] >= 0 and rect["y"] >= 0 and rect["x"] + rect["width"] <= size["width"] + 0.5
            and rect["y"] + rect["height"] <= size["height"] + 0.5)


def overlaps(a, b):
    return not (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])


def page_scrolls(page):
    return page.evaluate("document.documentElement.scrollHeight > window.innerHeight + 1")


def test_both_images_of_a_pair_are_in_view_above_the_answer_bar_on_a_phone(chromium, live_server, campaign):
    context, page = open_at(chromium, live_server, "pairwise", 390, 844, phone=True)
    close_instructions(page)
    left, right, bar = box(page, "image-left"), box(page, "image-right"), box(page, "overall-row")
    top_label = page.get_by_test_id("caption-left").inner_text()
    bottom_label = page.get_by_test_id("caption-right").inner_text()
    scrolls = page_scrolls(page)
    context.close()

    assert in_viewport(left, page) and in_viewport(right, page) and in_viewport(bar, page)
    assert not overlaps(left, right) and not overlaps(left, bar) and not overlaps(right, bar)
    assert not scrolls
    assert (top_label.strip(), bottom_label.strip()) == ("Top", "Bottom")  # stacked, so named by place


def test_a_tap_on_an_image_zooms_it_to_real_size_on_a_phone(chromium, live_server, campaign):
    context, page = open_at(chromium, live_server, "pairwise", 390, 844, phone=True)
    close_instructions(page)
    unit = current_unit(page)
    page.get_by_test_id("image-left").tap()
    page.wait_for_function("document.querySelector('[data-testid=zoom]').getAttribute('aria-pressed') === 'true'")
    zoomed = box(page, "image-left")
    src = page.get_by_test_id("image-left").get_attribute("src")
    context.close()

    assert src == unit["images"][0]["url"]
    real = unit["images"][0]
    assert (round(zoomed["width"]), round(zoomed["height"])) == (real["width"], real["height"])


def test_prompt_images_and_answers_fit_a_laptop_screen_without_scrolling(chromium, live_server, campaign):
    context, page = open_at(chromium, live_server, "pairwise", 1366, 768)
    close_instructions(page)
    ids = ["prompt", "image-left", "image-right", "choose-left", "choose-tie", "choose-right"]
    rects = {test_id: box(page, test_id) for test_id in ids}
    scrolls = page_scrolls(page)
    context.close()

    assert [test_id for test_id, rect in rects.items() if not in_viewport(rect, page)] == []
    assert not scrolls


def test_the_aspect_page_fits_a_laptop_screen_with_its_rationale_and_submit(chromium, live_server, campaign):
    context, page = open_at(chromium, live_server, "aspect_score", 1366, 768)
    close_instructions(page)
    ids = ["prompt", "image-single", "score-prompt_following-1", "score-harmlessness-5", "rationale", "submit-scores"]
    rects = {test_id: box(page, test_id) for test_id in ids}
    context.close()

    assert [test_id for test_id, rect in rects.items() if not in_viewport(rect, page)] == []


def test_instructions_open_on_the_first_visit_only_and_i_reopens_them(page, live_server, campaign):
    open_workspace(page, live_server, "pairwise")
    panel = page.get_by_test_id("instructions-close")
    first_visit_open = panel.is_visible()
    page.keyboard.press("i")
    panel.wait_for(state="hidden")
    page.reload()
    page.wait_for_function("window.workspace !== undefined")
    page.evaluate("window.workspace.ready")
    second_visit_open = panel.is_visible()
    page.keyboard.press("i")
    panel.wait_for(state="visible")

    assert first_visit_open and not second_visit_open


@pytest.mark.parametrize("width,height", [(1440, 900), (1366, 768)])
def test_per_aspect_mode_keeps_each_image_at_least_45_percent_of_the_viewport_wide(
        chromium, live_server, campaign, width, height):
    context, page = open_at(chromium, live_server, "pairwise", width, height)
    close_instructions(page)
    page.keyboard.press("a")
    page.get_by_test_id("aspect-rows").wait_for(state="visible")
    left, right = box(page, "image-left"), box(page, "image-right")
    context.close()

    assert left["width"] >= 0.45 * width and right["width"] >= 0.45 * width


def test_per_aspect_rows_show_key_hints_on_the_highlighted_row(page, live_server, campaign):
    open_workspace(page, live_server, "pairwise")
    close_instructions(page)
    page.keyboard.press("a")
    first_row_hint = page.get_by_test_id("aspect-prompt_following-left").locator("kbd")
    second_row_hint = page.get_by_test_id("aspect-aesthetic-left").locator("kbd")
    before = (first_row_hint.is_visible(), second_row_hint.is_visible())
    page.keyboard.press("1")  # answers the first aspect: the second row is highlighted now

    assert before == (True, False)
    assert (first_row_hint.is_visible(), second_row_hint.is_visible()) == (False, True)


def test_the_key_help_is_an_overlay_that_does_not_move_the_images(page, live_server, campaign):
    open_workspace(page, live_server, "pairwise")
    close_instructions(page)
    before = [box(page, test_id) for test_id in ("image-left", "image-right", "choose-left")]
    page.keyboard.press("?")
    page.get_by_test_id("key-help").wait_for(state="visible")
    during = [box(page, test_id) for test_id in ("image-left", "image-right", "choose-left")]
    help_box = box(page, "key-help")
    page.keyboard.press("Escape")
    page.get_by_test_id("key-help").wait_for(state="hidden")

    assert during == before
    assert overlaps(help_box, before[1])  # it lies over the page, not in its flow


@pytest.fixture
def large_pair(project, tmp_path, settings):
    """`cats` with one pairwise comparison of two 1800x1200 images (larger than any frame)."""
    settings.IMPORT_PREVIEW_LONG_SIDE = 128
    lines = []
    for i in range(2):
        (tmp_path / f"big{i}.png").write_bytes(image_bytes(color=(200, 60 * i, 90), size=(1800, 1200)))
        lines.append(json.dumps({"prompt": "two large squares", "image": f"big{i}.png"}))
    manifest_import(project=project, lines=lines, policy=SourcePolicy.from_settings(images_root=tmp_path))
    project_update(project=project, task_types=["pairwise"], overlap=1, gold_rate=0.0)
    work_units_open(project=project)
    membership_set(project=project, user=UserFactory(username="anna"), role="annotator")
    return project


def test_zoom_shows_the_originals_at_real_size_and_a_drag_pans_both(page, live_server, large_pair):
    open_workspace(page, live_server, "pairwise")
    close_instructions(page)
    unit = current_unit(page)
    page.keyboard.press("z")
    page.wait_for_function("document.querySelector('[data-testid=image-right]').src.endsWith("
                           f"{json.dumps(unit['images'][1]['url'])})")
    left, right = box(page, "image-left"), box(page, "image-right")
    scroll = "[...document.querySelectorAll('.ws-frame')].map(f => [f.scrollLeft, f.scrollTop])"
    start = page.evaluate(scroll)
    frame = box(page, "frame-left")
    page.mouse.move(frame["x"] + frame["width"] / 2, frame["y"] + frame["height"] / 2)
    page.mouse.down()
    page.mouse.move(frame["x"] + frame["width"] / 2 - 150, frame["y"] + frame["height"] / 2 - 80, steps=5)
    page.mouse.up()
    panned = page.evaluate(scroll)
    page.mouse.click(frame["x"] + frame["width"] / 2, frame["y"] + frame["height"] / 2)  # a click, no drag: back
    page.wait_for_function("document.querySelector('[data-testid=zoom]').getAttribute('aria-pressed') === 'false'")
    fitted, frame_after = box(page, "image-left"), box(page, "frame-left")

    assert [(round(b["width"]), round(b["height"])) for b in (left, right)] == [(1800, 1200), (1800, 1200)]
    assert [[round(x1 - x0), round(y1 - y0)] for (x0, y0), (x1, y1) in zip(start, panned)] == [[150, 80], [150, 80]]
    assert fitted["x"] >= frame_after["x"] and fitted["y"] >= frame_after["y"]
    assert fitted["x"] + fitted["width"] <= frame_after["x"] + frame_after["width"] + 0.5
    assert fitted["y"] + fitted["height"] <= frame_after["y"] + frame_after["height"] + 0.5


def test_enter_in_the_rationale_submits_shift_enter_adds_a_line_and_digits_stay_text(page, live_server, campaign):
    open_workspace(page, live_server, "aspect_score")
    close_instructions(page)
    first = current_unit(page)["assignment"]
    page.keyboard.press("4")
    page.keyboard.press("r")
    page.keyboard.type("3 cats")  # digits in the box are text
    page.keyboard.press("Enter")  # tries to submit: an aspect is missing, so it leaves the box and says which
    still_here = current_unit(page)["assignment"]
    for digit in "321":
        page.keyboard.press(digit)
    page.keyboard.press("r")
    page.keyboard.press("End")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("too dark")
    page.keyboard.press("Enter")
    page.wait_for_function(f"window.workspace.currentUnit() && window.workspace.currentUnit().assignment !== {first}")
    drain(page)

    assert still_here == first
    assert page.get_by_test_id("rationale-hint").inner_text() == "Enter submits, Shift+Enter starts a new line."
    rows = list(AspectScore.objects.filter(submission__assignment_id=first).values_list("aspect", "value", "rationale"))
    assert sorted(rows) == sorted([("prompt_following", 4, "3 cats\ntoo dark"), ("aesthetic", 3, "3 cats\ntoo dark"),
                                   ("fidelity", 2, "3 cats\ntoo dark"), ("harmlessness", 1, "3 cats\ntoo dark")])


def test_artifact_free_with_reasons_picked_asks_first_and_keeps_the_reasons(page, live_server, campaign):
    open_workspace(page, live_server, "artifact_flag")
    close_instructions(page)
    page.keyboard.press("2")  # hands
    page.keyboard.press("4")  # text
    page.keyboard.press("f")
    asked = page.get_by_test_id("status-message").inner_text()
    kept = [page.get_by_test_id(f"reason-{tag}").get_attribute("aria-pressed") for tag in ("hands", "text")]
    queued = page.evaluate("window.workspace.queueLength()")
    page.keyboard.press("a")
    page.keyboard.press("1")
    page.keyboard.press("f")
    page.keyboard.press("f")  # asked again, and confirmed: artifact-free, the pick dropped
    drain(page)

    assert queued == 0 and kept == ["true", "true"] and "hands, text" in asked
    assert list(ArtifactFlag.objects.order_by("id").values_list("has_artifacts", "reasons")) == [
        (True, ["hands", "text"]), (False, [])]


def test_personal_rating_page_shows_its_own_instructions(page, live_server, campaign):
    project_update(project=campaign, instructions="Prefer the image that follows the prompt.\n\n"
                                                  "## Personal rating\n\nGo with your gut.")
    open_workspace(page, live_server, "personal_rating")
    page.get_by_test_id("consent").check()
    page.get_by_test_id("onboarding-submit").click()
    page.wait_for_function("window.workspace.currentUnit() !== null")
    panel = page.get_by_test_id("instructions-close").locator("xpath=ancestor::section[1]")
    panel.wait_for(state="visible")
    text = panel.inner_text()

    assert "Go with your gut." in text and "how much you personally like" in text
    assert "follows the prompt" not in text


def test_done_today_counts_up_under_fast_keying(page, live_server, campaign):
    open_workspace(page, live_server, "pairwise")
    done = page.get_by_test_id("progress-done-today")
    page.wait_for_function("document.querySelector('[data-testid=progress-done-today]').textContent === '0'")
    page.route("**/work/submit/", lambda route: route.abort())  # acknowledgements are late: the count must not wait
    shown = []
    for key in "12312":
        page.keyboard.press(key)
        shown.append(done.inner_text())
        page.wait_for_function("window.workspace.currentUnit() !== null")
    page.unroute("**/work/submit/")
    drain(page)
    page.wait_for_timeout(800)  # the server's figure is read again after the acknowledgement

    assert shown == ["1", "2", "3", "4", "5"]
    assert done.inner_text() == "5" == str(PreferenceJudgment.objects.count())


def test_an_opaque_image_covers_its_transparency_checkerboard(page, live_server, campaign):
    open_workspace(page, live_server, "pairwise")
    close_instructions(page)
    unit = current_unit(page)
    shown = box(page, "image-left")
    frame_background = page.evaluate(
        "getComputedStyle(document.querySelector('[data-testid=frame-left]')).backgroundImage")

    # The checkerboard is the picture's own background, and the picture's box is the picture.
    assert frame_background == "none"
    assert abs(shown["width"] / shown["height"] - unit["images"][0]["width"] / unit["images"][0]["height"]) < 0.01
