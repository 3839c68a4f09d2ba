"""The filter-run report page of a run over 1,000,000 human judgments (100,000 comparisons x 10
annotators) and 4 machine judges asked in both orders, with every chart the run has and the first
of its pages of dropped units (target: <= 1 s).

Two figures: the server's time for the page (Django's full request stack, in process, production
settings), and Chromium's time from navigation to every chart drawn (the page's own
`report-charts-drawn` mark), each load in a fresh browser context so no script comes from its cache.
The app is served by runserver on loopback with DEBUG off, its static files collected and served by
WhiteNoise as in production.
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from common import ROOT, report, setup_django

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
PASSWORD = "report-bench-pw"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--comparisons", type=int, default=100_000)
    parser.add_argument("--loads", type=int, default=7)
    args = parser.parse_args()
    os.environ["DJANGO_STATIC_ROOT"] = tempfile.mkdtemp(prefix="bench-report-static-")
    setup_django(fresh_database=True)
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from annotation.models import Membership
    from curation.models import FilterRun
    from curation.rules import FilterRules
    from curation.services import filter_run_execute
    from seed import million_judgments, project_with_comparisons

    call_command("collectstatic", interactive=False, verbosity=0)
    project = project_with_comparisons(slug="report", comparisons=args.comparisons)
    million_judgments(project=project)
    researcher = get_user_model().objects.create_user("reader", password=PASSWORD)
    Membership.objects.create(project=project, user=researcher, role="researcher")
    # The default rules and `drop_likely_wrong`, so the page also lists dropped units (the weakest 20%).
    rules = FilterRules.from_json({"drop_likely_wrong": True}).as_json()
    run = FilterRun.objects.create(project=project, name="bench", version=1, rules=rules)
    run = filter_run_execute(run_id=run.pk)
    assert run.status == "succeeded", run.message
    path = f"/filter-runs/{run.pk}/"
    context = {"judgments": run.summary["judgments"], "comparisons": args.comparisons,
               "machine_judges": len(run.summary["machine_judges"]), "dropped": run.summary["dropped"],
               "loads": args.loads}

    client = Client()
    client.force_login(researcher)
    server_ms = []
    for _ in range(args.loads):
        started = time.perf_counter()
        response = client.get(path)
        server_ms.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    report("report_page_server_ms", statistics.median(server_ms), "ms", target="<= 1000",
           worst_ms=round(max(server_ms), 1), **context)

    if not os.path.exists(CHROMIUM):
        print('{"name": "report_page_charts_drawn_ms", "skipped": "no Chromium at %s"}' % CHROMIUM)
        return
    drawn_ms = served_and_drawn(path, args.loads)
    report("report_page_charts_drawn_ms", statistics.median(drawn_ms), "ms", target="<= 1000",
           worst_ms=round(max(drawn_ms), 1), browser="chromium headless, cold cache, 1440x900", **context)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def served_and_drawn(path: str, loads: int) -> list[float]:
    """Per load: ms from navigation start to the page's mark that every chart is drawn."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    server = subprocess.Popen([sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
                              cwd=ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/healthz/", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
            login = browser.new_context()
            page = login.new_page()
            page.goto(f"{base}/accounts/login/?next={path}")
            page.get_by_test_id("login-username").fill("reader")
            page.get_by_test_id("login-password").fill(PASSWORD)
            page.get_by_test_id("login-submit").click()
            page.wait_for_url(f"**{path}")
            cookies = login.cookies()
            login.close()
            timings = []
            for _ in range(loads):
                context = browser.new_context(viewport={"width": 1440, "height": 900})
                context.add_cookies(cookies)
                page = context.new_page()
                page.goto(f"{base}{path}")
                # A function, not a bare expression: the page's CSP forbids the eval a bare one needs.
                page.wait_for_function("() => document.body.dataset.chartsDrawn === 'true'", timeout=60_000)
                charts = page.eval_on_selector_all("[data-chart]", "(boxes) => boxes.filter((b) => b.dataset.drawn)"
                                                   ".length")
                assert charts >= 6, f"only {charts} charts drawn"
                timings.append(page.evaluate("() => performance.getEntriesByName('report-charts-drawn')[0].startTime"))
                context.close()
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    return timings


if __name__ == "__main__":
    main()
