"""The agreement matrix between the human consensus and the machine judges."""
import numpy as np
import pytest
from rest_framework.test import APIClient

from curation.stats.judge_matrix import UNDECIDED, judge_unit_verdicts, verdict_agreement_matrix
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
    assert sorted(matrix["labels"][1:]) == ["faithful-vlm", "first-picker"]
    human, faithful, picker = (matrix["labels"].index(n) for n in ("human consensus", "faithful-vlm", "first-picker"))
    agreement, shared = matrix["agreement"], matrix["shared"]
    assert agreement[human][faithful] == agreement[faithful][human] > 0.8 and shared[human][faithful] > 90
    assert shared[picker][picker] < 40  # the first-picker names a different side in each order: mostly no verdict
    page = APIClient()
    page.force_login(researcher)
    html = page.get(f"/filter-runs/{run.pk}/").content.decode()
    plot = html[html.index('data-testid="judge-matrix"'):]
    assert plot[:plot.index("</svg>")].count('data-testid="matrix-cell"') == 9
    assert "human consensus vs faithful-vlm: agree on" in plot
