"""Every main page works under its Content-Security-Policy: Chromium reports no violation, and each
page's response carries the header."""
import pytest

from annotation.models import ImportJob, ImportLineError
from annotation.invitations import invitation_create
from curation.models import DatasetExport
from mlworkers.models import AutoAnnotationJob
from tests.browser.conftest import sign_in
from tests.browser.test_workspace import campaign  # noqa: F401  (fixture)
from tests.curation.export_data import build_export_data

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Runs in every document before its own scripts; the binding survives navigations.
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) =>
  window.reportCspViolation(`${event.violatedDirective} blocked ${event.blockedURI || "inline"} on ${location.pathname}`));
"""


@pytest.fixture
def watched(page):
    """The page, with every CSP violation it reports (events and console messages) collected."""
    violations = []
    page.expose_function("reportCspViolation", lambda text: violations.append(text))
    page.add_init_script(REPORT_VIOLATIONS)
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.violations = violations
    return page


def visit(page, url: str, *, ready: str | None = None) -> None:
    """Open `url`, check its response's CSP header, wait for `ready` (a selector) and every image."""
    response = page.goto(url)
    assert response.ok, f"{url}: {response.status}"
    assert "default-src 'self'" in response.headers.get("content-security-policy", ""), url
    if ready:
        page.wait_for_selector(ready)
    page.wait_for_load_state("networkidle")
    assert_images_loaded(page)


def assert_images_loaded(page) -> int:
    """Every image of the page has loaded (media URLs answered the signed-in member); their number."""
    page.wait_for_function("[...document.images].every((i) => i.complete)")
    broken = page.evaluate("[...document.images].filter((i) => i.naturalWidth === 0).map((i) => i.src)")
    assert broken == [], f"{page.url}: images that did not load: {broken}"
    return page.evaluate("document.images.length")


def test_every_main_page_runs_without_a_csp_violation(watched, live_server, campaign, researcher):  # noqa: F811
    page, base = watched, live_server.url
    data = build_export_data(campaign)
    job = AutoAnnotationJob.objects.create(project=campaign, machine_annotator=data.machine, machine_version="v1",
                                           kind="score", aspects=["aesthetic"], status="succeeded")
    export = DatasetExport.objects.create(project=campaign, format="trl", container="jsonl", destination="x",
                                          status="failed", message="for the page")
    import_job = ImportJob.objects.create(project=campaign, manifest_key="imports/x.jsonl", lines_total=2,
                                          lines_done=2, rejected=1, status="succeeded")
    ImportLineError.objects.create(job=import_job, line=2, field="image", message="file not found: x.png")
    invitation = invitation_create(project=campaign, actor=researcher, join_code=True)
    researcher.is_staff = researcher.is_superuser = True  # for the admin's pages
    researcher.save()

    visit(page, f"{base}/accounts/login/", ready="[data-testid=login-form]")
    sign_in(page, live_server, "anna", "/")
    visit(page, f"{base}/")
    for task_type, images in (("pairwise", 2), ("aspect_score", 1), ("artifact_flag", 1), ("personal_rating", 0)):
        visit(page, f"{base}/work/cats/{task_type}/")
        page.wait_for_function("window.workspace !== undefined")
        page.evaluate("window.workspace.ready")
        assert assert_images_loaded(page) >= images, task_type
    page.get_by_test_id("logout").click()

    sign_in(page, live_server, "rita", "/projects/cats/progress/")
    for path, ready in [
        ("/projects/cats/progress/", None),
        ("/projects/cats/auto-jobs/", "[data-testid=launch-form]"),
        (f"/auto-jobs/{job.pk}/", "[data-testid=job-status]"),
        ("/projects/cats/filter-runs/", None),
        (f"/filter-runs/{data.run.pk}/", "body[data-charts-drawn]"),
        ("/projects/cats/exports/", "[data-testid=export-form]"),
        (f"/exports/{export.pk}/", "[data-testid=export-status]"),
        ("/projects/cats/members/", "[data-testid=invitation-copy]"),
        (f"/invite/{invitation.token}/", "[data-testid=invitation-page]"),
        ("/join-project/", "[data-testid=join-code-form]"),
        ("/projects/new/", "[data-testid=project-form]"),
        ("/projects/cats/settings/", "[data-testid=archive-form]"),
        ("/projects/cats/imports/", "[data-testid=import-form]"),
        (f"/imports/{import_job.pk}/", "[data-testid=rejected-lines]"),
        ("/admin/", None),
        ("/admin/annotation/image/", None),
        ("/api/docs/", ".swagger-ui .info"),
    ]:
        visit(page, base + path, ready=ready)

    assert page.violations == [], "\n".join(page.violations)


def test_an_inline_script_is_blocked_and_reported(watched, live_server, project, researcher):
    """The watch above can see a violation: one injected on purpose is blocked and reported."""
    page = watched
    sign_in(page, live_server, "rita", "/")

    page.evaluate("""() => { const s = document.createElement("script"); s.textContent = "window.ran = 1";
                             document.body.append(s); }""")
    page.wait_for_function("() => true")

    assert page.evaluate("window.ran") is None
    page.wait_for_timeout(200)
    assert any("script-src" in v for v in page.violations)
