"""The filter run's report beyond its verdicts: agreement per aspect, the raters' position bias
from a Bradley-Terry fit, score and rating checks, the judge agreement matrix, and the page."""
import random

import pytest
from rest_framework.test import APIClient

from annotation.models import Membership, PreferenceJudgment, Source
from tests.curation.chart_data import charts_on_page
from tests.curation.test_filter_runs import EXCLUDING, run_filter, simulated_crowd
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def judge_aspect(project, comparisons, *, aspect, names, accuracy, seed=5):
    """Each named rater judges every comparison on `aspect`, right (a for even indexes) with
    probability `accuracy`, the left side drawn at random."""
    rng = random.Random(seed)
    rows = []
    for name in names:
        user = UserFactory(username=name)
        Membership.objects.get_or_create(project=project, user=user)
        for index, comparison in enumerate(comparisons):
            truth = "a" if index % 2 == 0 else "b"
            choice = truth if rng.random() < accuracy else ("b" if truth == "a" else "a")
            left = comparison.image_a if rng.random() < 0.5 else comparison.image_b
            rows.append(PreferenceJudgment(project=project, source=Source.HUMAN, annotator=user,
                                           comparison=comparison, aspect=aspect, choice=choice, left_image=left))
    PreferenceJudgment.objects.bulk_create(rows)


def test_agreement_is_reported_for_every_aspect_with_judgments(project):
    comparisons = simulated_crowd(project, units=80)
    judge_aspect(project, comparisons, aspect="aesthetic", names=["r1", "r2", "r3"], accuracy=0.5)

    run = run_filter(project)

    rows = {row["aspect"]: row for row in run.summary["agreement_by_aspect"]}
    assert list(rows) == ["overall", "aesthetic"]  # overall first, then the project's aspects with judgments
    overall, aesthetic = rows["overall"], rows["aesthetic"]
    assert (overall["judgments"], overall["units"], overall["raters"]) == (560, 80, 7)
    assert (aesthetic["judgments"], aesthetic["units"], aesthetic["raters"]) == (240, 80, 3)
    assert overall["alpha_ci"][0] <= overall["alpha"] <= overall["alpha_ci"][1]
    assert overall["alpha"] > 0.3 > aesthetic["alpha"]  # 90%-right raters agree; coin flips do not
    assert overall["fleiss_kappa"] is not None and overall["fleiss_units"] == 80


def test_the_page_charts_alpha_per_aspect_by_its_label_beside_the_agreement_table(project, researcher):
    comparisons = simulated_crowd(project, units=40)
    judge_aspect(project, comparisons, aspect="aesthetic", names=["r1", "r2", "r3"], accuracy=0.9)
    run = run_filter(project)
    page = APIClient()
    page.force_login(researcher)

    html = page.get(f"/filter-runs/{run.pk}/").content.decode()

    bars = {row["key"]: row for row in charts_on_page(html)["agreement"]}
    assert {key: bars[key]["aspect"] for key in bars} == {"overall": "Overall", "aesthetic": "Aesthetic"}
    assert all(bars[key]["alpha"] == row["alpha"] and [bars[key]["low"], bars[key]["high"]] == row["alpha_ci"]
               for row in run.summary["agreement_by_aspect"] for key in [row["aspect"]])
    assert 'data-chart="agreement"' in html and 'data-testid="run-agreement-aesthetic"' in html


def test_an_aspect_without_an_alpha_keeps_its_label_and_says_why_on_the_chart(project, researcher):
    comparisons = simulated_crowd(project, units=20)
    judge_aspect(project, comparisons, aspect="fidelity", names=["solo"], accuracy=0.9)
    run = run_filter(project)
    page = APIClient()
    page.force_login(researcher)

    bars = {row["key"]: row for row in charts_on_page(page.get(f"/filter-runs/{run.pk}/").content.decode())["agreement"]}

    fidelity = next(row for row in run.summary["agreement_by_aspect"] if row["aspect"] == "fidelity")
    assert fidelity["alpha"] is None and fidelity["message"]
    assert bars["fidelity"]["aspect"] == "Fidelity" and bars["fidelity"]["alpha"] is None
    assert bars["fidelity"]["note"] == fidelity["message"]


def test_the_rater_table_gives_each_raters_left_advantage_from_the_bradley_terry_fit(project):
    simulated_crowd(project, units=120)

    run = run_filter(project)

    raters = {row["rater"]: row for row in run.summary["raters"]}
    lefty = raters["lefty"]
    assert lefty["left_advantage"] > 2 and lefty["left_advantage_se"] > 0  # always left: as far as the prior allows
    for name in ("r1", "r2", "r3", "r4", "r5", "clicker"):
        row = raters[name]
        assert abs(row["left_advantage"]) < 3 * row["left_advantage_se"], row
        assert row["left_share_ci"][0] < row["left_share"] < row["left_share_ci"][1]
    fit = run.summary["position_bias_fit"]
    assert fit["converged"] and fit["ties"] == "left out" and fit["judgments"] == 7 * 120
    # simulated_crowd gives every pair two images of its own: one prompt, 120 unconnected parts.
    assert fit["components"] == 120 and fit["split_prompts"] == 1


def test_the_page_draws_each_raters_left_share_and_left_advantage(project, researcher):
    simulated_crowd(project, units=40)
    run = run_filter(project)
    page = APIClient()
    page.force_login(researcher)

    html = page.get(f"/filter-runs/{run.pk}/").content.decode()

    rows = {row["rater"]: row for row in charts_on_page(html)["bias"]}
    lefty = next(r for r in run.summary["raters"] if r["rater"] == "lefty")
    assert len(rows) == 7 and 'data-chart="bias-share"' in html and 'data-chart="bias-advantage"' in html
    assert rows["lefty"]["left_share"] == 1.0 and [rows["lefty"]["share_low"], rows["lefty"]["share_high"]] == \
        lefty["left_share_ci"]
    assert rows["lefty"]["advantage_low"] == pytest.approx(lefty["left_advantage"] - 1.96 * lefty["left_advantage_se"])


def test_the_reliability_chart_puts_each_rater_at_their_volume_and_agreement(project, researcher):
    simulated_crowd(project, units=40)
    run = run_filter(project, EXCLUDING)  # lefty and the clicker are left out, drawn red
    page = APIClient()
    page.force_login(researcher)

    html = page.get(f"/filter-runs/{run.pk}/").content.decode()

    points = charts_on_page(html)["reliability"]["points"]
    lefty = next(r for r in run.summary["raters"] if r["rater"] == "lefty")
    assert sorted(name for p in points for name in p["raters"].split(", ")) == sorted(
        r["rater"] for r in run.summary["raters"])
    at_lefty = next(p for p in points if "lefty" in p["raters"].split(", "))
    assert (at_lefty["judgments"], at_lefty["agreement"]) == (40, lefty["agreement"])
    assert at_lefty["status"] == "left out by this run" and lefty["excluded"] in at_lefty["why"]
