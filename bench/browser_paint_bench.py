"""In Chromium: from the key press to the next pair fully painted (target p50 <= 16 ms, p95 <= 33 ms).

Serves the app with runserver on loopback against the bench PostgreSQL database, imports 60
prompts x 4 real 1024x1024 images (the workspace shows their 448 px previews), signs in as an
annotator and answers 100 pairs with the keyboard at a person's pace (400 ms apart), reading
the workspace's `keypress` and `unit-painted` marks from the Performance API.
"""
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import ROOT, report, setup_django

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
PRESSES = 100


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main():
    if not Path(CHROMIUM).exists():
        print(json.dumps({"name": "browser_keypress_to_paint_ms", "skipped": f"no Chromium at {CHROMIUM}"}))
        return
    work = Path(tempfile.mkdtemp(prefix="bench-paint-"))
    os.environ["DJANGO_MEDIA_ROOT"] = str(work / "media")
    # runserver serves static files and media only in debug mode.
    os.environ["DJANGO_DEBUG"] = "true"
    setup_django(fresh_database=True)
    from django.contrib.auth import get_user_model
    from PIL import Image, ImageDraw

    from annotation.assignment import work_units_open
    from annotation.image_sources import SourcePolicy
    from annotation.importing import manifest_import
    from annotation.models import Membership, Project

    lines = []
    for p in range(60):
        for k in range(4):
            img = Image.new("RGB", (1024, 1024), ((p * 37) % 256, (k * 70) % 256, 120))
            ImageDraw.Draw(img).ellipse((100 + k * 50, 100, 700, 600 + p), fill=(250, 200, 40))
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=90)
            (work / f"{p}-{k}.jpg").write_bytes(buf.getvalue())
            lines.append(json.dumps({"prompt": f"a yellow disc number {p}", "image": f"{p}-{k}.jpg"}))
    project = Project.objects.create(slug="paint", name="paint", overlap=1, gold_rate=0)
    manifest_import(project=project, lines=lines, policy=SourcePolicy.from_settings(images_root=work))
    work_units_open(project=project)
    user = get_user_model().objects.create_user("painter", password="paint-bench-pw")
    Membership.objects.create(project=project, user=user, role="annotator")

    port = free_port()
    env = dict(os.environ)
    server = subprocess.Popen([sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz/", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        latencies = measure(f"http://127.0.0.1:{port}")
    finally:
        server.terminate()
        server.wait(timeout=10)
    latencies.sort()
    context = {"presses": len(latencies), "image": "1024px JPEG, 448px WebP preview", "browser": "chromium headless"}
    report("browser_keypress_to_paint_p50_ms", statistics.median(latencies), "ms", target="<= 16", **context)
    report("browser_keypress_to_paint_p95_ms", latencies[int(len(latencies) * 0.95)], "ms", target="<= 33", **context)


def measure(base_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{base_url}/accounts/login/?next=/work/paint/pairwise/")
        page.get_by_test_id("login-username").fill("painter")
        page.get_by_test_id("login-password").fill("paint-bench-pw")
        page.get_by_test_id("login-submit").click()
        page.wait_for_url("**/work/paint/pairwise/")
        # A function, not a bare expression: Playwright evals bare ones on every poll, which the CSP forbids.
        page.wait_for_function("() => window.workspace !== undefined")
        page.evaluate("window.workspace.ready")
        page.wait_for_timeout(1000)
        for i in range(PRESSES):
            page.keyboard.press("1" if i % 2 else "2")
            page.wait_for_timeout(400)
        latencies = page.evaluate("""() => {
            const presses = performance.getEntriesByName('keypress').map(m => m.startTime);
            const paints = performance.getEntriesByName('unit-painted').map(m => m.startTime);
            return presses.map(t => { const p = paints.find(x => x >= t); return p === undefined ? null : p - t; })
                          .filter(x => x !== null);
        }""")
        browser.close()
    return latencies


if __name__ == "__main__":
    main()
