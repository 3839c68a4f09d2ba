"""Every aggregator the docs name runs a filter run and the report says which one ran; NoisyBT,
the pairwise model; dropped units a page at a time, by reason, with each vote as it was seen;
p-values written one way."""
import math

import numpy as np
import pytest

from annotation.models import PreferenceJudgment, Source
from curation.models import DropReason, UnitVerdict
from curation.report.numbers import p_value_text
from curation.rules import CONSENSUS_METHODS
from curation.stats.aggregation import majority_consensus, weighted_consensus
from curation.stats.judgments import CHOICE_A, CHOICE_B, CurationInputError, PairwiseJudgments
from tests.conftest import client_for
from tests.curation.test_filter_runs import run_filter, simulated_crowd
from tests.factories import ComparisonFactory, MembershipFactory, PromptFactory, UserFactory


def _tournament(seed=0, *, prompts=40, images=5, reliable=4, left_clickers=3):
    """Every pair of `images` images per prompt, judged by reliable raters (Bradley-Terry with true
    strengths, sides shown at random) and by raters who click the left image four times in five."""
    rng = np.random.default_rng(seed)
    strength = rng.normal(0, 1.5, size=prompts * images)
    pairs = [(p * images + i, p * images + k) for p in range(prompts) for i in range(images) for k in range(i + 1, images)]
    image_a = np.array([a for a, _ in pairs])
    image_b = np.array([b for _, b in pairs])
    truth = np.where(strength[image_a] > strength[image_b], CHOICE_A, CHOICE_B)
    unit, rater, choice, left_is_a = [], [], [], []
    for u in range(len(pairs)):
        for r in range(reliable + left_clickers):
            a_left = rng.random() < 0.5
            if r < reliable:
                p_a = 1 / (1 + math.exp(strength[image_b[u]] - strength[image_a[u]]))
                chose_a = rng.random() < p_a
            else:
                chose_a = a_left if rng.random() < 0.8 else not a_left
            unit.append(u), rater.append(r), choice.append(CHOICE_A if chose_a else CHOICE_B), left_is_a.append(a_left)
    judgments = PairwiseJudgments.from_arrays(unit=unit, rater=rater, choice=choice, left_is_a=left_is_a)
    return judgments, (image_a, image_b), truth


def test_noisy_bt_uses_the_images_shared_across_pairs_and_beats_majority_under_left_clickers():
    judgments, unit_images, truth = _tournament()

    noisy = weighted_consensus(judgments, method="noisy_bt", unit_images=unit_images)
    majority = majority_consensus(judgments, min_judgments=1)

    noisy_accuracy = float((noisy.verdict == truth).mean())
    majority_accuracy = float((majority.verdict == truth).mean())
    assert noisy.method == "noisy_bt" and noisy.settings["ties"] == "share"
    assert noisy_accuracy >= majority_accuracy + 0.05, (noisy_accuracy, majority_accuracy)
    assert np.all((noisy.confidence >= 0.5) & (noisy.confidence <= 1.0))


def test_noisy_bt_without_the_units_images_is_refused_by_name():
    judgments, _, _ = _tournament(prompts=2)
    with pytest.raises(CurationInputError, match="noisy_bt needs the images of each unit"):
        weighted_consensus(judgments, method="noisy_bt")


@pytest.mark.django_db
@pytest.mark.parametrize("method", CONSENSUS_METHODS)
def test_every_documented_aggregator_runs_a_filter_run_and_the_report_names_it(project, researcher, method):
    simulated_crowd(project, units=30)

    run = run_filter(project, {"consensus": method})

    assert run.status == "succeeded", run.message
    assert run.summary["consensus_method"] == method
    label = {"dawid_skene": "Dawid-Skene", "one_coin_ds": "one-coin Dawid-Skene", "glad": "GLAD", "mace": "MACE",
             "noisy_bt": "NoisyBT", "majority": "majority vote"}[method]
    assert label in run.summary["consensus"]
    assert UnitVerdict.objects.filter(run=run).count() == 30
    client = client_for(researcher)
    client.force_login(researcher)
    assert label in client.get(f"/filter-runs/{run.pk}/").content.decode()


def _dropped_crowd(project):
    """60 units: 20 with one vote each way (undecided under majority with a margin), 40 all ties;
    the left image is image b for every vote."""
    prompt = PromptFactory(project=project)
    comparisons = [ComparisonFactory(prompt=prompt) for _ in range(60)]
    ann, bob = (MembershipFactory(project=project, user=UserFactory(username=n)).user for n in ("ann", "bob"))
    rows = []
    for index, comparison in enumerate(comparisons):
        choices = ("a", "b") if index < 20 else ("tie", "tie")
        for user, choice in zip((ann, bob), choices):
            rows.append(PreferenceJudgment(project=project, source=Source.HUMAN, annotator=user, comparison=comparison,
                                           choice=choice, left_image=comparison.image_b))
    PreferenceJudgment.objects.bulk_create(rows)
    return comparisons


@pytest.mark.django_db
def test_dropped_units_come_a_page_at_a_time_and_filter_by_reason(project, researcher):
    comparisons = _dropped_crowd(project)
    run = run_filter(project, {"consensus": "majority", "min_confidence": 0.1, "drop_ties": True})
    assert run.summary["drop_reasons"] == {"undecided": 20, "tie": 40, "likely_wrong": 0, "missing_image": 0}
    client = client_for(researcher)
    client.force_login(researcher)

    first = client.get(f"/filter-runs/{run.pk}/").content.decode()
    second = client.get(f"/filter-runs/{run.pk}/?page=2").content.decode()
    undecided = client.get(f"/filter-runs/{run.pk}/?reason=undecided").content.decode()

    assert "page 1 of 2 (60 units)" in first and "page 2 of 2 (60 units)" in second
    assert first.count('data-testid="dropped-') == 50 and first.count('data-testid="votes-') == 50
    shown = {c.id for c in comparisons if f'data-testid="dropped-{c.id}"' in undecided}
    assert shown == {c.id for c in comparisons[:20]}
    assert "pages-of-dropped-units" not in undecided  # 20 fit on one page
    api = client.get(f"/api/v1/filter-runs/{run.pk}/verdicts/?reason=tie").json()
    assert api["count"] == 40 and {row["drop_reason"] for row in api["results"]} == {"tie"}
    bad = client.get(f"/api/v1/filter-runs/{run.pk}/verdicts/?reason=boredom")
    assert bad.status_code == 400 and "unknown reason 'boredom'" in bad.json()["message"]
    assert set(UnitVerdict.objects.filter(run=run, keep=False).values_list("drop_reason", flat=True)) == {
        DropReason.UNDECIDED, DropReason.TIE}


@pytest.mark.django_db
def test_dropped_units_show_each_vote_as_the_annotator_saw_it_with_the_canonical_side(project, researcher):
    comparisons = _dropped_crowd(project)
    run = run_filter(project, {"consensus": "majority", "min_confidence": 0.1, "drop_ties": True})
    client = client_for(researcher)
    client.force_login(researcher)

    page = client.get(f"/filter-runs/{run.pk}/?reason=undecided").content.decode()

    # Image b was on the left: a vote for a was a click on the right.
    cell = page.split(f'data-testid="votes-{comparisons[0].id}">', 1)[1].split("</td>", 1)[0]
    assert cell == "right (a), left (b)"
    ties = client.get(f"/filter-runs/{run.pk}/?reason=tie").content.decode()
    assert ties.split(f'data-testid="votes-{comparisons[30].id}">', 1)[1].split("</td>", 1)[0] == "tie, tie"


def test_p_values_are_written_one_way():
    assert p_value_text(0.0342) == "p = 0.034"
    assert p_value_text(0.001) == "p = 0.001"
    assert p_value_text(3.21e-05) == "p = 3.2e-05"
    assert p_value_text(0.0) == "p < 1e-300"
    assert p_value_text(float("nan")) == "p undefined" and p_value_text(None) == "p undefined"


@pytest.mark.django_db
def test_the_rater_table_and_the_exclusion_reason_write_the_same_p_value(project, researcher):
    simulated_crowd(project, units=60)
    run = run_filter(project, {"exclude_position_biased": True})
    client = client_for(researcher)
    client.force_login(researcher)

    lefty = next(row for row in run.summary["raters"] if row["rater"] == "lefty")
    written = p_value_text(lefty["p_value"])
    page = client.get(f"/filter-runs/{run.pk}/").content.decode()

    assert written in lefty["excluded"]
    assert f"({written})" in page
