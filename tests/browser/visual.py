"""Screenshots compared with committed baselines (tests/browser/baselines/<name>.png).

A page matches its baseline when at most `MAX_CHANGED_SHARE` of its pixels differ by more than
`PIXEL_TOLERANCE` in any channel: anti-aliasing noise passes, a moved button or a wrapped line
does not. Text that changes from run to run is covered by Playwright's mask: every <time>, every
pseudonym (class `pseudonym`) and anything else marked `data-volatile` in its template. A mask
only paints over a box, and the box's width follows its text ("Nov. 3" against "Dec. 30", a
temporary folder's name), so the text of a volatile element with no child elements is first
replaced with one fixed string (a chart marked volatile keeps its size).

`make screenshots` rewrites the baselines (UPDATE_BASELINES=1); review the PNGs before committing.
A failed comparison leaves the page as shot and a diff image under var/visual-diffs/.
"""
import io
import os
from pathlib import Path

from PIL import Image, ImageChops

BASELINES = Path(__file__).resolve().parent / "baselines"
DIFFS = Path(__file__).resolve().parents[2] / "var" / "visual-diffs"
PIXEL_TOLERANCE = 48  # of 255, per channel
MAX_CHANGED_SHARE = 0.003
VOLATILE = "time, .pseudonym, [data-volatile]"
SIZES = {"desktop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}


def updating() -> bool:
    return os.environ.get("UPDATE_BASELINES") == "1"


def changed_share(actual: Image.Image, expected: Image.Image) -> tuple[float, Image.Image]:
    """The share of pixels that differ beyond the tolerance, and an image of where they are."""
    if actual.size != expected.size:
        return 1.0, actual
    red, green, blue = ImageChops.difference(actual.convert("RGB"), expected.convert("RGB")).split()
    largest = ImageChops.lighter(red, ImageChops.lighter(green, blue))  # per pixel, its largest channel change
    changed = largest.point(lambda v: 255 if v > PIXEL_TOLERANCE else 0)
    count = changed.histogram()[255]
    return count / (actual.width * actual.height), changed


def assert_matches_baseline(page, name: str) -> None:
    """Shoot the viewport (animations off, caret hidden, volatile text masked) and compare."""
    # Fonts loaded and two frames painted since: what is shot is what settled.
    page.evaluate("document.fonts.ready.then(() => new Promise(done => "
                  "requestAnimationFrame(() => requestAnimationFrame(done))))")
    page.evaluate("selector => document.querySelectorAll(selector).forEach(element => {"
                  "if (!element.children.length) element.textContent = '0000-00-00 00:00'; })", VOLATILE)
    shot = page.screenshot(animations="disabled", caret="hide", mask=[page.locator(VOLATILE)],
                           mask_color="#888888")
    baseline = BASELINES / f"{name}.png"
    if updating():
        BASELINES.mkdir(parents=True, exist_ok=True)
        baseline.write_bytes(shot)
        return
    assert baseline.exists(), f"no baseline {baseline.name}: run `make screenshots` and review the new PNGs"
    actual = Image.open(io.BytesIO(shot))
    share, where = changed_share(actual, Image.open(baseline))
    if share > MAX_CHANGED_SHARE:
        DIFFS.mkdir(parents=True, exist_ok=True)
        actual.save(DIFFS / f"{name}.actual.png")
        where.save(DIFFS / f"{name}.diff.png")
        raise AssertionError(
            f"{name}: {share:.2%} of the pixels differ from {baseline.name} (at most {MAX_CHANGED_SHARE:.2%}); "
            f"see {DIFFS / (name + '.actual.png')} and .diff.png, or run `make screenshots` if the change is meant")
