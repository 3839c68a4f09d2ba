"""Which machine judges weigh in the preference strength: one the swap check flags as
position-biased is left out, and the report and its page say so."""
import re

import pytest

from annotation.models import MachineAnnotator, PreferenceJudgment, Source
from curation.models import UnitVerdict
from tests.curation.test_filter_runs import run_filter, simulated_crowd

pytestmark = pytest.mark.django_db


def judges(project, comparisons, names):
    """Machine judges asked every pair in both orders, "overall": `steady-*` always name the true
    winner (a for even units), `always-first` always picks the image shown first."""
    rows = []
    for name in names:
        judge = MachineAnnotator.objects.create(name=name, backend="openai_chat", model_ref="m", version=name[:16])
        for index, comparison in enumerate(comparisons):
            for a_first in (True, False):
                if name == "always-first":
                    choice = "a" if a_first else "b"
                else:
                    choice = "a" if index % 2 == 0 else "b"
                rows.append(PreferenceJudgment(
                    project=project, source=Source.MACHINE, machine_annotator=judge, machine_version=judge.version,
                    comparison=comparison, aspect="overall", choice=choice,
                    left_image=comparison.image_a if a_first else comparison.image_b))
    PreferenceJudgment.objects.bulk_create(rows)


def strengths(run) -> list[float]:
    return list(UnitVerdict.objects.filter(run=run, consensus__in=["a", "b"]).values_list("strength", flat=True))


def test_a_judge_the_swap_check_flags_is_left_out_of_the_strength_and_the_report_says_why(project):
    judges(project, simulated_crowd(project, units=60), ["steady-1", "steady-2", "always-first"])

    run = run_filter(project)

    rows = {row["judge"]: row for row in run.summary["machine_judges"]}
    biased = rows["always-first"]
    assert biased["position_biased"] and biased["first_share"] == 1.0
    assert re.fullmatch(r"position bias: picked the image shown first 100% of 120 times \(p = 1\.5e-36\); "
                        r"its verdict survived swapping the sides on 0% of 60 pairs", biased["strength_left_out"])
    assert rows["steady-1"]["strength_left_out"] == rows["steady-2"]["strength_left_out"] == ""
    assert run.summary["strength"]["left_out"] == [f"always-first left out: {biased['strength_left_out']}"]
    # Only the two steady judges weigh: each unit's mean is +1 or -1, never the biased judge's +-1/3.
    assert strengths(run) and set(strengths(run)) <= {1.0, -1.0}
    assert run.summary["strength"]["scored"] == len(strengths(run))


@pytest.mark.parametrize("people_rule", [{"exclude_position_biased": True}, {"exclude_position_biased": False}])
def test_the_flagged_judge_is_left_out_whatever_the_rule_for_position_biased_people(project, people_rule):
    judges(project, simulated_crowd(project, units=60), ["steady-1", "steady-2", "always-first"])

    run = run_filter(project, people_rule)

    assert {row["judge"]: bool(row["strength_left_out"]) for row in run.summary["machine_judges"]} == {
        "steady-1": False, "steady-2": False, "always-first": True}
    assert set(strengths(run)) <= {1.0, -1.0}


def test_a_judge_the_swap_check_does_not_flag_at_the_runs_level_weighs_in_the_strength(project):
    judges(project, simulated_crowd(project, units=60), ["steady-1", "steady-2", "always-first"])

    run = run_filter(project, {"position_bias_p": 1e-40})  # its 120 first picks of 120: p = 1.5e-36

    rows = {row["judge"]: row for row in run.summary["machine_judges"]}
    assert not rows["always-first"]["position_biased"] and rows["always-first"]["strength_left_out"] == ""
    assert run.summary["strength"]["left_out"] == []
    assert {round(s, 6) for s in strengths(run)} & {0.333333, -0.333333}  # two steady judges' +-1 and its -+1


def test_with_every_judge_left_out_no_unit_is_scored_and_the_report_says_so(project, researcher, client):
    judges(project, simulated_crowd(project, units=30), ["always-first"])
    client.force_login(researcher)

    run = run_filter(project)
    html = client.get(f"/filter-runs/{run.pk}/").content.decode()

    strength = run.summary["strength"]
    assert strength["scored"] == 0 and strength["likely_wrong"] == 0 and strength["histogram"]["counts"] == []
    assert len(strength["left_out"]) == 1 and strength["left_out"][0].startswith("always-first left out: position")
    assert not UnitVerdict.objects.filter(run=run, strength__isnull=False).exists()
    assert "No machine judge is left to weigh the units." in html


def test_the_report_page_says_which_judge_was_left_out_of_the_strength_and_why(project, researcher, client):
    judges(project, simulated_crowd(project, units=40), ["steady-1", "always-first"])
    run = run_filter(project)
    client.force_login(researcher)

    html = client.get(f"/filter-runs/{run.pk}/").content.decode()

    left_out = html[html.index('data-testid="run-judge-always-first-strength"'):]
    assert left_out[:left_out.index("</td>")].startswith(
        'data-testid="run-judge-always-first-strength"><strong>left out</strong>: position bias: picked the image')
    kept = html[html.index('data-testid="run-judge-steady-1-strength"'):]
    assert kept[:kept.index("</td>")].endswith(">yes")
    left_out_list = html[html.index('data-testid="run-strength-left-out"'):]
    assert "<li>always-first left out: position bias" in left_out_list[:left_out_list.index("</ul>")]
