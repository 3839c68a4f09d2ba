"""The filter-run report draws every chart with the vendored Vega (nothing from a CDN) under the
page's CSP: axes with titles and ticks, marks, text of 12 px or more, inside the page at desktop and
phone widths; tooltips name who a mark stands for; the judge matrix prints its table's numbers."""
import pytest

from tests.browser.conftest import sign_in
from tests.browser.test_csp import REPORT_VIOLATIONS
from tests.curation.test_filter_runs import run_filter
from tests.curation.test_score_report import RULES, scored_aesthetics

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Every chart the scored-aesthetics run has; the matrix names its axes by their labels alone.
CHARTS_WITH_AXIS_TITLES = ["reliability", "bias-share", "bias-advantage", "agreement", "strength", "aspect_scores",
                           "machine_scores"]


@pytest.fixture
def report_page(page, live_server, project, researcher):
    """A run over people's and machine judges' aesthetic pairs and scores, its report open in the
    browser once every chart is drawn; CSP violations, console errors and page errors collected."""
    scored_aesthetics(project)
    run = run_filter(project, RULES)
    problems = []
    page.expose_function("reportCspViolation", lambda text: problems.append(text))
    page.add_init_script(REPORT_VIOLATIONS)
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning")
            else None)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(live_server.url) else None)
    sign_in(page, live_server, "rita", f"/filter-runs/{run.pk}/")

    def open_at(width: int, height: int):
        page.set_viewport_size({"width": width, "height": height})
        page.goto(f"{live_server.url}/filter-runs/{run.pk}/")
        page.wait_for_selector("body[data-charts-drawn]")
        return page

    open_at.problems, open_at.outside, open_at.run = problems, outside, run
    return open_at


def chart_facts(page, name: str) -> dict:
    """What Vega drew in the chart `name`: marks, axis titles and labels, the smallest font, widths."""
    return page.evaluate("""(name) => {
        const box = document.querySelector(`[data-chart="${name}"]`);
        const svg = box.querySelector("svg");
        const texts = [...box.querySelectorAll("svg text")];
        return {
            drawn: box.dataset.drawn === "true", failed: box.dataset.failed || null, svg: svg !== null,
            marks: box.querySelectorAll("g.role-mark > *").length,
            axisTitles: [...box.querySelectorAll(".role-axis-title text")].map((t) => t.textContent),
            axisLabels: box.querySelectorAll(".role-axis-label text").length,
            ticks: box.querySelectorAll(".role-axis-tick line, .role-axis-tick path").length,
            smallestFont: Math.min(...texts.map((t) => parseFloat(getComputedStyle(t).fontSize))),
            chartWidth: svg ? svg.getBoundingClientRect().width : 0,
            boxWidth: box.clientWidth,
            pageWidth: document.documentElement.clientWidth,
        };
    }""", name)


@pytest.mark.parametrize(("width", "height"), [(1440, 900), (390, 844)])
def test_every_chart_is_drawn_with_axes_and_readable_text_without_csp_violation_or_error(report_page, width, height):
    page = report_page(width, height)

    names = page.eval_on_selector_all("[data-chart]", "(boxes) => boxes.map((b) => b.dataset.chart)")
    assert sorted(names) == sorted([*CHARTS_WITH_AXIS_TITLES, "matrix"])
    for name in names:
        facts = chart_facts(page, name)
        assert facts["drawn"] and facts["svg"] and facts["failed"] is None, (name, facts)
        assert facts["marks"] > 0 and facts["axisLabels"] > 0 and facts["ticks"] > 0, (name, facts)
        if name in CHARTS_WITH_AXIS_TITLES:
            assert facts["axisTitles"], (name, facts)
        assert facts["smallestFont"] >= 12, (name, facts)
        assert facts["chartWidth"] <= facts["boxWidth"] + 1 <= facts["pageWidth"] + 1, (name, facts)
    assert report_page.problems == [], "\n".join(report_page.problems)
    assert report_page.outside == []


def test_the_matrix_prints_the_numbers_of_its_table_with_full_judge_names(report_page):
    page = report_page(1440, 900)

    drawn = page.eval_on_selector_all('[data-chart="matrix"] g.mark-text.role-mark text',
                                      "(ts) => ts.map((t) => t.textContent)")
    table = page.eval_on_selector_all("[data-testid=matrix-table-cell]",
                                      "(cells) => cells.map((c) => c.textContent.trim().split(/\\s+/)[0])")
    matrix = report_page.run.summary["judge_matrix"]
    expected = [f"{v:.2f}" if v is not None else "–" for row in matrix["agreement"] for v in row]
    assert drawn == table == expected
    labels = page.eval_on_selector_all('[data-chart="matrix"] .role-axis-label text',
                                       "(ts) => ts.map((t) => t.textContent)")
    assert set(labels) == set(matrix["labels"]) == {"human consensus", "good-scorer", "noise-scorer"}


def test_a_raters_point_and_a_cells_tooltip_name_who_they_stand_for(report_page):
    page = report_page(1440, 900)

    point = page.locator('[data-chart="reliability"] g.mark-symbol path').first
    point.hover(force=True)
    tooltip = page.locator("#vg-tooltip-element")
    tooltip.wait_for(state="visible")
    assert any(name in tooltip.inner_text() for name in ("steady", "generous", "flip"))
    page.locator('[data-chart="matrix"] g.mark-rect path').nth(1).hover(force=True)
    page.wait_for_function("document.querySelector('#vg-tooltip-element').textContent.includes('human consensus')")
    assert "units both decided" in tooltip.inner_text()
