"""A filter run over machine judges asked k times per query: self-consistency from their samples,
and every other figure counting each judge once per query (the majority of its samples)."""
import pytest
from rest_framework.test import APIClient

from annotation.models import MachineAnnotator, PreferenceJudgment, Source
from tests.curation.test_filter_runs import run_filter, simulated_crowd

pytestmark = pytest.mark.django_db
UNITS, K = 40, 3


def sampled_judges(project, comparisons, *, versions=("v1",)):
    """Two judges asked K times per (unit, order), the true side being a for even units:
    "steady-vlm" gives it every time; "erratic-vlm" gives it in samples 0 and 1 and the wrong side
    in its last sample (so its majority is right and its last verdict wrong)."""
    rows = []
    for name in ("steady-vlm", "erratic-vlm"):
        judge = MachineAnnotator.objects.create(name=name, backend="openai_chat", model_ref="m", version=versions[0])
        for index, comparison in enumerate(comparisons):
            truth, wrong = ("a", "b") if index % 2 == 0 else ("b", "a")
            for left in (comparison.image_a, comparison.image_b):
                for sample in range(K):
                    choice = wrong if name == "erratic-vlm" and sample == K - 1 else truth
                    rows.append(PreferenceJudgment(
                        project=project, source=Source.MACHINE, machine_annotator=judge, machine_version=judge.version,
                        comparison=comparison, aspect="overall", choice=choice, left_image=left, sample=sample))
    PreferenceJudgment.objects.bulk_create(rows)


def judge_rows(run):
    return {row["judge"]: row for row in run.summary["machine_judges"]}


def test_a_consistent_judge_scores_one_and_an_erratic_one_clearly_lower(project):
    sampled_judges(project, simulated_crowd(project, units=UNITS))

    judges = judge_rows(run_filter(project))

    steady, erratic = judges["steady-vlm"], judges["erratic-vlm"]
    assert steady["self_consistency"] == 1.0 and erratic["self_consistency"] == pytest.approx(1 / 3)
    for row in (steady, erratic):
        assert row["self_consistency_keys"] == UNITS * 2 and row["samples_per_key"] == K
        assert row["judgments"] == UNITS * 2 * K


def test_an_erratic_judges_k_verdicts_count_once_in_its_human_accuracy_swap_and_matrix(project):
    sampled_judges(project, simulated_crowd(project, units=UNITS))

    run = run_filter(project)

    steady, erratic = judge_rows(run)["steady-vlm"], judge_rows(run)["erratic-vlm"]
    # Once per unit, by the majority of its samples: as many pairs as the steady judge, all right
    # (its last sample, always wrong, would score 0).
    assert 30 < erratic["human_pairs"] == steady["human_pairs"] <= UNITS
    assert erratic["human_accuracy"] == steady["human_accuracy"] > 0.9
    assert erratic["swapped_units"] == UNITS and erratic["swap_agreement"] == 1.0
    matrix = run.summary["judge_matrix"]
    s, e = matrix["labels"].index("steady-vlm"), matrix["labels"].index("erratic-vlm")
    assert matrix["shared"][e][e] == UNITS and matrix["agreement"][s][e] == 1.0
    assert run.summary["strength"]["scored"] == erratic["human_pairs"]


def test_a_judge_asked_once_per_query_has_no_self_consistency_even_across_versions(project):
    comparisons = simulated_crowd(project, units=UNITS)
    judge = MachineAnnotator.objects.create(name="once-vlm", backend="openai_chat", model_ref="m", version="v1")
    PreferenceJudgment.objects.bulk_create([
        PreferenceJudgment(project=project, source=Source.MACHINE, machine_annotator=judge, machine_version=version,
                           comparison=comparison, aspect="overall", choice="a", left_image=left)
        for version in ("v1", "v2") for comparison in comparisons for left in (comparison.image_a, comparison.image_b)])

    row = judge_rows(run_filter(project))["once-vlm"]

    assert row["self_consistency"] is None and row["self_consistency_keys"] == 0 and row["samples_per_key"] == 1.0
    assert "asked once" in row["self_consistency_message"]
    assert row["swap_agreement"] == 1.0  # the order swap keeps its own figure


def test_the_report_page_shows_self_consistency_with_its_queries_and_samples(project, researcher):
    sampled_judges(project, simulated_crowd(project, units=UNITS))
    run = run_filter(project)
    page = APIClient()
    page.force_login(researcher)

    html = page.get(f"/filter-runs/{run.pk}/").content.decode()

    assert "Self-consistency over k samples" in html
    cell = html[html.index('data-testid="run-judge-erratic-vlm-self-consistency"'):]
    assert cell[:cell.index("</td>")].endswith(f">0.33 over {UNITS * 2} queries (3.0 samples each)")
