"""The agreement matrix between the human consensus and the machine judges."""
import re

import numpy as np
import pytest
from rest_framework.test import APIClient

from curation.models import UnitVerdict
from curation.stats.judge_matrix import UNDECIDED, judge_unit_verdicts, verdict_agreement_matrix
from tests.curation.chart_data import charts_on_page
from tests.curation.test_filter_runs import machine_judges, run_filter, simulated_crowd


def test_a_judges_verdict_is_its_plurality_and_a_split_between_orders_is_none():
    # judge 0 on unit 0: a, a (both orders agree); on unit 1: a, b (split); judge 1 only unit 1: tie.
    verdicts = judge_unit_verdicts(unit=[0, 0, 1, 1, 1], judge=[0, 0, 0, 0, 1], verdict=[0, 0, 0, 1, 2],
                                   n_units=3, n_judges=2)

    assert verdicts.tolist() == [[0, UNDECIDED, UNDECIDED], [UNDECIDED, 2, UNDECIDED]]


def test_agreement_counts_only_units_both_decided():
    verdicts = np.array([[0, 1, 2, UNDECIDED],
                         [0, 0, 2, 1],
                         [UNDECIDED, UNDECIDED, UNDECIDED, UNDECIDED]])

    result = verdict_agreement_matrix(verdicts)

    assert result.agreement[0, 1] == pytest.approx(2 / 3) and result.shared[0, 1] == 3
    assert result.agreement[1, 1] == 1.0 and result.shared[1, 1] == 4
    assert np.isnan(result.agreement[0, 2]) and result.shared[2, 2] == 0


@pytest.mark.django_db
def test_the_report_has_the_matrix_of_the_human_consensus_and_every_judge(project, researcher):
    machine_judges(project, simulated_crowd(project, units=120))

    run = run_filter(project)

    matrix = run.summary["judge_matrix"]
    assert matrix["labels"][0] == "human consensus"
    assert matrix["labels"][1:] == ["faithful-vlm", "first-picker"]  # name order, as in the judges' table
    human, faithful, picker = (matrix["labels"].index(n) for n in ("human consensus", "faithful-vlm", "first-picker"))
    agreement, shared = matrix["agreement"], matrix["shared"]
    assert agreement[human][faithful] == agreement[faithful][human] > 0.8 and shared[human][faithful] > 90
    assert shared[picker][picker] < 40  # the first-picker names a different side in each order: mostly no verdict
    page = APIClient()
    page.force_login(researcher)
    html = page.get(f"/filter-runs/{run.pk}/").content.decode()
    cells = charts_on_page(html)["matrix"]["cells"]
    assert len(cells) == 9 and html.count('data-testid="matrix-table-cell"') == 9
    assert {(c["row"], c["column"]): c["agreement"] for c in cells}[("human consensus", "faithful-vlm")] == \
        agreement[human][faithful]


@pytest.mark.django_db
def test_the_matrix_gives_each_judge_the_accuracy_against_humans_of_the_judges_table(project):
    # The first-picker's two orders split on most units; each order's verdict alone is right about half
    # the time. The table once kept its last verdict per unit and the matrix the plurality of both,
    # so the two printed different numbers for the same judge (0.00 against 0.25 on a small run).
    machine_judges(project, simulated_crowd(project, units=120))

    run = run_filter(project)

    matrix = run.summary["judge_matrix"]
    for row in run.summary["machine_judges"]:
        column = matrix["labels"].index(row["judge"])
        assert matrix["agreement"][0][column] == row["human_accuracy"]
        assert matrix["shared"][0][column] == row["human_pairs"]


@pytest.mark.django_db
def test_the_matrix_and_the_accuracy_leave_out_the_units_humans_call_a_tie(project):
    # Human ties (scored_aesthetics has some) count in neither: a judge's a / b there is not wrong.
    from tests.curation.test_score_report import RULES, scored_aesthetics

    scored_aesthetics(project)

    run = run_filter(project, RULES)

    matrix = run.summary["judge_matrix"]
    tied = sum(1 for v in UnitVerdict.objects.filter(run=run) if v.consensus == "tie")
    assert tied > 0 and matrix["shared"][0][0] == run.summary["units"] - tied
    good = next(row for row in run.summary["machine_judges"] if row["judge"] == "good-scorer")
    assert matrix["agreement"][0][matrix["labels"].index("good-scorer")] == good["human_accuracy"] == 1.0


@pytest.mark.django_db
def test_the_page_prints_the_same_matrix_numbers_in_the_heat_map_data_and_its_table(project, researcher):
    machine_judges(project, simulated_crowd(project, units=60))
    run = run_filter(project)
    page = APIClient()
    page.force_login(researcher)

    html = page.get(f"/filter-runs/{run.pk}/").content.decode()

    drawn = [cell["text"] for cell in charts_on_page(html)["matrix"]["cells"]]
    table = re.findall(r'data-testid="matrix-table-cell"[^>]*>([^<]*?) <small>', html)
    assert drawn == table == [f"{v:.2f}" for row in run.summary["judge_matrix"]["agreement"] for v in row]
