"""Filter runs over judgments in the database: verdicts with reasons, determinism, the report."""
import random

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from annotation.models import PreferenceJudgment, Source
from curation import services
from curation.models import UnitVerdict
from tests.conftest import client_for, wait_for
from tests.curation.chart_data import charts_on_page
from tests.factories import ComparisonFactory, MembershipFactory, PromptFactory, UserFactory

pytestmark = pytest.mark.django_db


def simulated_crowd(project, *, units=120, seed=3):
    """5 reliable raters (90% right), 1 always-left rater, 1 random clicker, on `units` pairs
    whose true winner is a when the unit index is even. Sides are shown at random."""
    rng = random.Random(seed)
    prompt = PromptFactory(project=project)
    comparisons = [ComparisonFactory(prompt=prompt) for _ in range(units)]
    raters = {name: MembershipFactory(project=project, user=UserFactory(username=name)).user
              for name in ["r1", "r2", "r3", "r4", "r5", "lefty", "clicker"]}
    rows = []
    for index, comparison in enumerate(comparisons):
        truth = "a" if index % 2 == 0 else "b"
        for name, user in raters.items():
            a_left = rng.random() < 0.5
            if name == "lefty":
                choice = "a" if a_left else "b"
            elif name == "clicker":
                choice = rng.choice(["a", "b"])
            else:
                choice = truth if rng.random() < 0.9 else ("b" if truth == "a" else "a")
            rows.append(PreferenceJudgment(
                project=project, source=Source.HUMAN, annotator=user, comparison=comparison, aspect="overall",
                choice=choice, left_image=comparison.image_a if a_left else comparison.image_b, latency_ms=1200))
    PreferenceJudgment.objects.bulk_create(rows)
    return comparisons


def run_filter(project, rules=None, name="default"):
    run = services.filter_run_create(project=project, name=name, rules=rules)
    return services.filter_run_execute(run_id=run.pk)


# Leaving raters out is an explicit rule now (the defaults weigh them instead: docs/curation.md).
EXCLUDING = {"exclude_position_biased": True, "min_rater_agreement": 0.55, "min_judgments": 2,
             "min_confidence": 0.6}


def test_filter_run_excludes_the_biased_and_random_raters_and_recovers_the_truth(project):
    comparisons = simulated_crowd(project)

    run = run_filter(project, EXCLUDING)

    raters = {row["rater"]: row for row in run.summary["raters"]}
    assert raters["lefty"]["excluded"].startswith("position bias")
    assert "agreement" in raters["clicker"]["excluded"]
    assert all(not raters[f"r{i}"]["excluded"] for i in range(1, 6))
    verdicts = {v.comparison_id: v for v in UnitVerdict.objects.filter(run=run)}
    kept = [v for v in verdicts.values() if v.keep]
    correct = sum(v.consensus == ("a" if i % 2 == 0 else "b")
                  for i, c in enumerate(comparisons) if (v := verdicts[c.id]).keep)
    assert run.status == "succeeded" and len(verdicts) == 120
    assert len(kept) >= 110 and correct / len(kept) >= 0.97, (len(kept), correct)
    assert run.summary["alpha"] is not None and run.summary["alpha_ci"][0] <= run.summary["alpha"]


def test_every_dropped_unit_says_why(project):
    simulated_crowd(project, units=40)

    run = run_filter(project, {**EXCLUDING, "min_judgments": 6})  # more than the 5 trusted raters give

    dropped = UnitVerdict.objects.filter(run=run, keep=False)
    assert dropped.count() == 40
    assert all("at least 6 needed" in v.reasons[0] for v in dropped)
    assert all("excluded raters left out" in v.reasons[-1] for v in dropped)


def test_the_same_rules_on_the_same_data_give_the_same_verdicts(project):
    simulated_crowd(project, units=60)

    first = run_filter(project)
    second = run_filter(project)

    def verdicts(run):
        return list(UnitVerdict.objects.filter(run=run).order_by("comparison_id")
                    .values_list("comparison_id", "keep", "consensus", "confidence", "reasons"))

    assert (first.version, second.version) == (1, 2)
    assert verdicts(first) == verdicts(second) and first.summary == second.summary


def test_raw_judgments_are_never_touched(project):
    simulated_crowd(project, units=20)
    before = list(PreferenceJudgment.objects.order_by("id").values_list("id", "choice", "retracted_at"))

    run_filter(project)

    assert list(PreferenceJudgment.objects.order_by("id").values_list("id", "choice", "retracted_at")) == before


def test_a_project_without_judgments_gets_a_message_not_a_crash(project):
    run = run_filter(project)

    assert run.status == "succeeded" and "no human judgments" in run.message and run.summary["units"] == 0


def test_all_ties_are_ties_and_can_be_dropped(project):
    comparison = ComparisonFactory(prompt=PromptFactory(project=project))
    for name in ["a1", "a2", "a3"]:
        user = MembershipFactory(project=project, user=UserFactory(username=name)).user
        PreferenceJudgment.objects.create(project=project, source=Source.HUMAN, annotator=user, comparison=comparison,
                                          choice="tie", left_image=comparison.image_a)

    kept = run_filter(project, {"min_rater_agreement": None})
    dropped = run_filter(project, {"min_rater_agreement": None, "drop_ties": True}, name="no-ties")

    assert UnitVerdict.objects.get(run=kept).consensus == "tie" and UnitVerdict.objects.get(run=kept).keep
    verdict = UnitVerdict.objects.get(run=dropped)
    assert not verdict.keep and "ties are dropped" in verdict.reasons[0]


@pytest.mark.parametrize(("rules", "words"), [
    ({"min_confidence": 1.5}, "min_confidence: must lie between 0 and 1"),
    ({"min_judgments": 0}, "min_judgments: must be a whole number"),
    ({"consensus": "vibes"}, "consensus: must be one of dawid_skene, one_coin_ds, glad, mace, noisy_bt, majority"),
    ({"position_bias_p": 0}, "position_bias_p"),
    ({"min_rater_agreement": -0.1}, "min_rater_agreement"),
    ({"aspect": "taste"}, "'taste' is not an aspect"),
    ({"threshold": 3}, "unknown rule(s) threshold"),
])
def test_rules_out_of_range_are_refused_by_name(project, rules, words):
    with pytest.raises(ValidationError, match=words.replace("(", r"\(").replace(")", r"\)")):
        services.filter_run_create(project=project, name="bad", rules=rules)


def test_report_and_dropped_units_through_the_api(project, researcher, annotator):
    simulated_crowd(project, units=30)
    run = run_filter(project, {**EXCLUDING, "min_judgments": 6})
    client = client_for(researcher)

    report = client.get(f"/api/v1/filter-runs/{run.pk}/").json()
    dropped = client.get(f"/api/v1/filter-runs/{run.pk}/verdicts/?keep=false").json()

    assert report["summary"]["dropped"] == 30 and report["rules"]["min_judgments"] == 6
    assert dropped["count"] == 30 and dropped["results"][0]["reasons"]
    assert client_for(annotator).get(f"/api/v1/filter-runs/{run.pk}/").status_code == 404
    refused = client_for(researcher).post("/api/v1/projects/cats/filter-runs/",
                                          {"name": "x", "rules": {"min_confidence": 2}}, format="json")
    assert refused.status_code == 400 and "min_confidence" in refused.json()["message"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_filter_run_started_through_the_api_runs_on_a_worker(celery_worker_process, project, researcher):
    simulated_crowd(project, units=30)
    client = client_for(researcher)

    created = client.post("/api/v1/projects/cats/filter-runs/", {"name": "api"}, format="json")
    run = wait_for(lambda: (lambda r: r if r["status"] in ("succeeded", "failed") else None)(
        client.get(f"/api/v1/filter-runs/{created.json()['id']}/").json()), what="the filter run")

    assert run["status"] == "succeeded" and run["summary"]["units"] == 30


def test_suspension_returns_leases_marks_judgments_and_reinstatement_undoes_it(project):
    from annotation.assignment import assignments_lease_next, work_units_open
    from annotation.models import Assignment, Membership, WorkUnit
    from annotation.services import membership_reinstate, membership_suspend

    simulated_crowd(project, units=10)
    work_units_open(project=project)
    lefty = Membership.objects.select_related("project", "user").get(user__username="lefty")
    leased = assignments_lease_next(membership=lefty, task_type="pairwise", count=1)
    unit = WorkUnit.objects.get(id=leased[0].unit_id)
    assert unit.leased == 1

    membership_suspend(project=project, user=lefty.user, reason="always picks the left image")

    lefty.refresh_from_db()
    assert lefty.status == "suspended"
    assert Assignment.objects.get(id=leased[0].id).status == "expired"
    assert WorkUnit.objects.get(id=unit.id).leased == 0
    marked = PreferenceJudgment.objects.filter(annotator=lefty.user)
    assert marked.count() == 10 and all(j.excluded_reason.startswith("annotator suspended") for j in marked)
    run = run_filter(project, {"exclude_position_biased": False, "min_rater_agreement": None})
    assert "lefty" not in {r["rater"] for r in run.summary["raters"]}

    membership_reinstate(project=project, user=lefty.user)

    assert not PreferenceJudgment.objects.filter(annotator=lefty.user).exclude(excluded_reason="").exists()
    again = run_filter(project, {"exclude_position_biased": False, "min_rater_agreement": None}, name="again")
    assert "lefty" in {r["rater"] for r in again.summary["raters"]}


def test_a_run_may_suspend_the_raters_it_leaves_out(project):
    from annotation.models import Membership

    simulated_crowd(project, units=60)

    run = run_filter(project, {**EXCLUDING, "suspend_excluded_raters": True})

    assert run.summary["suspended"] == ["clicker", "lefty"]
    assert set(Membership.objects.filter(status="suspended").values_list("user__username", flat=True)) == {
        "clicker", "lefty"}


def machine_judges(project, comparisons, seed=11):
    """Two machine judges asked in both orders: a faithful one (90% right) and one that picks
    whatever is shown first 90% of the time."""
    from annotation.models import MachineAnnotator

    rng = random.Random(seed)
    judges = {name: MachineAnnotator.objects.create(name=name, backend="openai_chat", model_ref="m", version=name[:16])
              for name in ["faithful-vlm", "first-picker"]}
    rows = []
    for index, comparison in enumerate(comparisons):
        truth = "a" if index % 2 == 0 else "b"
        for a_first in (True, False):
            for name, judge_row in judges.items():
                if name == "faithful-vlm":
                    choice = truth if rng.random() < 0.9 else ("b" if truth == "a" else "a")
                else:
                    first = "a" if a_first else "b"
                    choice = first if rng.random() < 0.9 else ("b" if first == "a" else "a")
                rows.append(PreferenceJudgment(
                    project=project, source=Source.MACHINE, machine_annotator=judge_row,
                    machine_version=judge_row.version, comparison=comparison, aspect="overall", choice=choice,
                    left_image=comparison.image_a if a_first else comparison.image_b))
    PreferenceJudgment.objects.bulk_create(rows)


def test_the_report_catches_the_position_biased_machine_judge(project):
    machine_judges(project, simulated_crowd(project, units=120))

    run = run_filter(project)

    judges_report = {row["judge"]: row for row in run.summary["machine_judges"]}
    faithful, biased = judges_report["faithful-vlm"], judges_report["first-picker"]
    assert biased["position_biased"] and not faithful["position_biased"]
    assert faithful["swap_agreement"] > 0.75 > 0.3 > biased["swap_agreement"]
    assert faithful["human_accuracy"] > 0.8 and faithful["human_pairs"] > 90
    assert faithful["human_accuracy_ci"][0] < faithful["human_accuracy"] < faithful["human_accuracy_ci"][1]
    assert run.summary["transitivity"]["prompts_checked"] == 1


def test_preference_strength_flags_the_weakest_units_and_may_drop_them(project):
    machine_judges(project, simulated_crowd(project, units=100))

    kept_all = run_filter(project)
    strict = run_filter(project, {"drop_likely_wrong": True, "likely_wrong_pct": 10, "ambiguous_pct": 10}, name="s")

    strength = strict.summary["strength"]
    scored = strength["scored"]  # units with a decided consensus and machine verdicts
    assert scored > 90
    assert strength["likely_wrong"] == scored * 10 // 100
    assert strength["ambiguous"] == scored * 20 // 100 - scored * 10 // 100
    assert sum(strength["histogram"]["counts"]) == scored
    dropped = UnitVerdict.objects.filter(run=strict, keep=False)
    assert dropped.count() == kept_all.summary["dropped"] + strength["likely_wrong"]
    assert sum("likely wrong" in v.reasons[0] for v in dropped) == strength["likely_wrong"]


def test_the_report_page_shows_judges_strength_and_transitivity(project, researcher):
    machine_judges(project, simulated_crowd(project, units=40))
    run = run_filter(project)
    page = APIClient()
    page.force_login(researcher)

    html = page.get(f"/filter-runs/{run.pk}/").content.decode()

    assert 'data-testid="run-judge-first-picker"' in html and "position-biased" in html
    bins = charts_on_page(html)["strength"]
    assert [b["units"] for b in bins] == run.summary["strength"]["histogram"]["counts"] and len(bins) == 20
    assert 'data-testid="run-transitivity"' in html


def test_raters_failing_gold_units_are_left_out_with_their_accuracy(project):
    from annotation.assignment import work_units_open
    from annotation.models import WorkUnit

    comparisons = simulated_crowd(project, units=60)
    work_units_open(project=project)
    for index, comparison in enumerate(comparisons[:20]):  # the truth is a for even indexes
        WorkUnit.objects.filter(comparison=comparison).update(
            is_gold=True, gold_answer={"choice": "a" if index % 2 == 0 else "b"})

    run = run_filter(project, {"min_gold_accuracy": 0.8, "exclude_position_biased": False,
                               "min_rater_agreement": None})

    raters = {row["rater"]: row for row in run.summary["raters"]}
    assert raters["r1"]["gold_answers"] == 20 and raters["r1"]["gold_accuracy"] >= 0.8 and not raters["r1"]["excluded"]
    for name in ("lefty", "clicker"):
        assert raters[name]["excluded"].startswith("gold accuracy"), raters[name]


def test_a_queued_filter_run_is_cancelled_from_its_page_and_the_page_says_so(project, researcher, client):
    run = services.filter_run_create(project=project, name="nightly", rules={}, created_by=researcher)
    client.force_login(researcher)

    page = client.get(f"/filter-runs/{run.pk}/").content.decode()
    response = client.post(f"/filter-runs/{run.pk}/cancel/")

    assert 'data-testid="run-cancel"' in page and "started by rita" in page
    run.refresh_from_db()
    assert response.status_code == 302 and run.status == "cancelled" and run.message == "cancelled before it started"
    assert 'data-testid="run-cancel"' not in client.get(f"/filter-runs/{run.pk}/").content.decode()


def test_the_report_shows_the_share_kept_and_estimated_accuracy_at_each_confidence_threshold(project, researcher,
                                                                                            client):
    simulated_crowd(project, units=60)

    run = run_filter(project)
    client.force_login(researcher)
    page = client.get(f"/filter-runs/{run.pk}/").content.decode()

    rows = run.summary["confidence_tradeoff"]
    assert [row["min_confidence"] for row in rows] == [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99]
    assert rows[0]["kept"] == run.summary["kept"] == 60  # by default every unit gets a consensus
    assert all(a["kept"] >= b["kept"] for a, b in zip(rows, rows[1:]))
    assert all(row["estimated_accuracy"] is None or row["estimated_accuracy"] >= row["min_confidence"]
               for row in rows)
    assert 'data-testid="confidence-tradeoff"' in page


def test_machine_judges_are_listed_in_name_order_on_every_run(project):
    from annotation.models import MachineAnnotator

    comparisons = simulated_crowd(project, units=20)
    machine_judges(project, comparisons)
    late = MachineAnnotator.objects.create(name="aardvark", backend="openai_chat", model_ref="m", version="aardvark")
    PreferenceJudgment.objects.bulk_create([PreferenceJudgment(
        project=project, source=Source.MACHINE, machine_annotator=late, machine_version=late.version,
        comparison=comparison, aspect="overall", choice="a", left_image=comparison.image_a)
        for comparison in comparisons])  # created last, named first

    first, second = run_filter(project), run_filter(project)

    names = [row["judge"] for row in first.summary["machine_judges"]]
    assert names == ["aardvark", "faithful-vlm", "first-picker"]
    assert names == [row["judge"] for row in second.summary["machine_judges"]]
