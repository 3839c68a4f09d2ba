"""Real-browser tests: Debian's Chromium driven by Playwright against pytest-django's live server.

Without a Chromium these tests skip on a developer machine, and fail under CI (CI=true).
"""
import os
import re
import shutil
import time

import pytest

from tests.mlworkers.conftest import chat_server, imported  # noqa: F401  (fixtures the job page tests use)

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make between
# browser steps are ordinary blocking calls on their own connection.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-quic", "--no-first-run", "--disable-sync"]


def chromium_missing_reason() -> str | None:
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    return None


@pytest.fixture(scope="session")
def chromium():
    reason = chromium_missing_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests must run in CI: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def polling_without_eval(page):
    """Lets `page.wait_for_function` take a bare expression on pages whose Content-Security-Policy
    forbids eval (all of ours): Playwright evals a bare expression in the page on every poll, which
    the policy blocks, but a function only once, through DevTools, which it does not."""
    wait_for_function = page.wait_for_function

    def wait(expression: str, *args, **kwargs):
        if not re.match(r"\s*(async\b|function\b|\([^)]*\)\s*=>|\w+\s*=>)", expression):
            expression = f"() => ({expression})"
        return wait_for_function(expression, *args, **kwargs)

    page.wait_for_function = wait
    return page


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = polling_without_eval(context.new_page())
    page.set_default_timeout(15_000)
    log = []
    in_flight = set()
    page.on("request", lambda r: in_flight.add(r) if "/api/" in r.url else None)
    page.on("requestfinished", lambda r: in_flight.discard(r))
    page.on("requestfailed", lambda r: in_flight.discard(r))
    page.on("console", lambda m: log.append(f"console {m.type}: {m.text}"))
    page.on("response", lambda r: log.append(f"{r.status} {r.request.method} {r.url}") if "/api/" in r.url else None)
    page.on("requestfailed", lambda r: log.append(f"FAILED {r.method} {r.url} {r.failure}"))
    yield page
    if os.environ.get("BROWSER_LOG"):
        print("\n".join(log[-60:]))
    # Let requests the page still has in flight (the workspace's background queue) finish before the
    # database is flushed: a submit that the live server is still writing deadlocks the flush's TRUNCATE.
    deadline = time.monotonic() + 5
    while in_flight and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    context.close()


PASSWORD = "correct horse battery"  # what tests.factories.UserFactory sets


def sign_in(page, live_server, username: str, next_path: str, password: str = PASSWORD) -> None:
    """Sign in through the login page and land on `next_path`."""
    page.goto(f"{live_server.url}/accounts/login/?next={next_path}")
    page.get_by_test_id("login-username").fill(username)
    page.get_by_test_id("login-password").fill(password)
    page.get_by_test_id("login-submit").click()
    page.wait_for_url(f"**{next_path}")
