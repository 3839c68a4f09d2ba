"""Bad input to a filter run: each case finishes with a clear message in the report, not a crash.
(No judgments, thresholds out of range at creation and all-tie verdicts are also covered in
test_filter_runs.py.)"""
import math

import pytest
from django.db import connection
from django.db.models import Q

from annotation.models import AspectScore, PreferenceJudgment, Source
from curation import services
from curation.report import filter_run
from curation.models import FilterRun, UnitVerdict
from tests.curation.test_filter_runs import run_filter, simulated_crowd
from tests.factories import ComparisonFactory, ImageFactory, PromptFactory, UserFactory

pytestmark = pytest.mark.django_db


def judge_all(project, comparisons, names, choice="a"):
    for name in names:
        user = UserFactory(username=name)
        for comparison in comparisons:
            PreferenceJudgment.objects.create(project=project, source=Source.HUMAN, annotator=user,
                                              comparison=comparison, choice=choice, left_image=comparison.image_a)


def delete_with_its_judgments(image):
    """A judged image cannot be deleted (its judgments protect it): its judgments go first, as they
    do when their whole project is deleted, the one way judgments ever go."""
    PreferenceJudgment.objects.filter(Q(comparison__image_a=image) | Q(comparison__image_b=image)).delete()
    AspectScore.objects.filter(image=image).delete()
    image.delete()


def test_a_disconnected_comparison_graph_is_fitted_and_the_report_counts_its_components(project):
    prompt = PromptFactory(project=project)
    images = [ImageFactory(prompt=prompt) for _ in range(4)]
    # Two pairs of one prompt that share no image: the prompt's graph has two parts.
    pairs = [ComparisonFactory(prompt=prompt, image_a=images[0], image_b=images[1]),
             ComparisonFactory(prompt=prompt, image_a=images[2], image_b=images[3])]
    judge_all(project, pairs, ["ann", "bob", "cy"])

    run = run_filter(project, {"min_rater_agreement": None})

    assert run.status == "succeeded" and run.summary["units"] == 2
    message = ("the comparison graph is disconnected: 2 components over 1 prompt(s), 1 prompt(s) split into "
               "unconnected parts")
    assert any(note.startswith(message) for note in run.summary["notes"])
    assert run.summary["position_bias_fit"]["components"] == 2
    assert all(row["left_advantage"] is not None for row in run.summary["raters"])


def store_nan_score(score: AspectScore) -> None:
    """Make `score`'s value NaN. PostgreSQL stores a float NaN; SQLite turns a NaN parameter into
    NULL (refused by NOT NULL), so there the column holds the text 'NaN', which reads back as NaN."""
    value = float("nan") if connection.vendor == "postgresql" else "NaN"
    with connection.cursor() as cursor:
        cursor.execute("UPDATE annotation_aspectscore SET value = %s WHERE id = %s", [value, score.pk])


def test_nan_aspect_scores_are_dropped_and_counted_in_the_report(project):
    comparisons = simulated_crowd(project, units=10)
    images = [c.image_a for c in comparisons]
    stored = []
    for name in ("r1", "r2", "r3"):
        user = UserFactory(username=name)
        stored += [AspectScore.objects.create(project=project, source=Source.HUMAN, annotator=user, image=image,
                                              aspect="aesthetic", value=1 + (i + len(name)) % 5)
                   for i, image in enumerate(images)]
    store_nan_score(stored[0])
    store_nan_score(stored[11])

    run = run_filter(project)

    assert run.status == "succeeded"
    (aesthetic,) = run.summary["aspect_scores"]["aspects"]
    assert aesthetic["scores"] == 30 and aesthetic["message"] == "2 NaN score(s) dropped"
    assert aesthetic["alpha_z"] is not None and not math.isnan(aesthetic["alpha_z"])
    assert run.summary["aspect_scores"]["message"].startswith("2 NaN score(s) dropped")
    assert "2 NaN aspect score(s) dropped before the score checks" in run.summary["notes"]


def test_a_deleted_image_takes_its_comparison_and_earlier_verdicts_with_it(project):
    comparisons = simulated_crowd(project, units=12)
    earlier = run_filter(project, name="before")
    gone = comparisons[0]

    delete_with_its_judgments(gone.image_a)  # the cascade: comparison and earlier runs' verdicts on it

    run = run_filter(project)
    assert run.status == "succeeded" and run.summary["units"] == 11
    assert not any("skipped" in note for note in run.summary["notes"])  # nothing of it is left to skip
    assert not UnitVerdict.objects.filter(comparison_id=gone.id).exists()
    assert UnitVerdict.objects.filter(run=earlier).count() == 11


def test_an_image_deleted_while_the_run_reads_its_judgments_is_skipped_and_said_so(project, monkeypatch):
    comparisons = simulated_crowd(project, units=12)
    load = filter_run.pairwise_judgments_load

    def load_then_delete(**kwargs):
        loaded = load(**kwargs)
        if kwargs.get("source") == "human" and comparisons[3].image_b_id:
            delete_with_its_judgments(comparisons[3].image_b)  # another request deletes an image meanwhile
            comparisons[3].image_b_id = None
        return loaded

    monkeypatch.setattr(filter_run, "pairwise_judgments_load", load_then_delete)

    run = run_filter(project)

    assert run.status == "succeeded" and run.summary["units"] == 11
    assert ("1 judged unit(s) skipped: their comparison was deleted (with one of its images) while the run read "
            "the judgments") in run.summary["notes"]
    assert UnitVerdict.objects.filter(run=run).count() == 11


def test_an_image_deleted_while_the_run_computes_loses_its_verdict_and_is_said_so(project, monkeypatch):
    comparisons = simulated_crowd(project, units=12)
    load_scores = filter_run.scores_load

    def delete_then_load_scores(**kwargs):
        delete_with_its_judgments(comparisons[5].image_a)  # after the judgments were read, before the verdicts
        return load_scores(**kwargs)

    monkeypatch.setattr(filter_run, "scores_load", delete_then_load_scores)

    run = run_filter(project)

    assert run.status == "succeeded" and run.summary["units"] == 11
    assert run.summary["kept"] + run.summary["dropped"] == 11
    assert ("1 unit(s) skipped: their comparison was deleted (with one of its images) while the run computed"
            in run.summary["notes"])
    assert UnitVerdict.objects.filter(run=run).count() == 11


def test_units_whose_image_file_is_missing_from_storage_are_dropped_when_asked(project):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    comparisons = simulated_crowd(project, units=6)
    for comparison in comparisons:
        for image in (comparison.image_a, comparison.image_b):
            for key in (image.storage_key, image.preview_key):
                if not default_storage.exists(key):
                    default_storage.save(key, ContentFile(b"x"))
    lost = comparisons[2].image_b
    default_storage.delete(lost.storage_key)

    unchecked = run_filter(project, name="unchecked")
    run = run_filter(project, {"check_image_files": True})

    verdict = UnitVerdict.objects.get(run=run, comparison=comparisons[2])
    assert not verdict.keep
    assert f"image b ({lost.id}) is missing from storage: original {lost.storage_key}" in verdict.reasons
    assert "1 unit(s) dropped: 1 of their image(s) have a file missing from storage" in run.summary["notes"]
    assert run.summary["dropped"] == unchecked.summary["dropped"] + 1
    assert unchecked.summary["image_files"] == {"checked": False, "missing": 0}


def test_one_annotator_gives_undefined_agreement_with_its_reason(project):
    comparisons = simulated_crowd(project, units=5)
    PreferenceJudgment.objects.exclude(annotator__username="r1").delete()

    run = run_filter(project, {"min_judgments": 1})

    assert run.status == "succeeded" and run.summary["units"] == 5 and run.summary["alpha"] is None
    assert run.summary["alpha_message"] == "no unit has values from two or more raters; alpha needs pairable values"
    (overall,) = run.summary["agreement_by_aspect"]
    assert overall["message"].startswith("no unit has values from two or more raters")
    assert [row["agreement"] for row in run.summary["raters"]] == [None]
    assert len(comparisons) == UnitVerdict.objects.filter(run=run).count()


def test_all_ties_say_there_is_no_side_to_weigh_when_ties_are_decided_by_share(project):
    judge_all(project, [ComparisonFactory(prompt=PromptFactory(project=project)) for _ in range(3)],
              ["a1", "a2", "a3"], choice="tie")

    run = run_filter(project, {"ties": "share"})

    assert run.status == "succeeded" and run.message == "every judgment is a tie; no side to weigh"
    assert run.summary["alpha_message"].startswith("all pairable values are equal")
    assert run.summary["position_bias_fit"]["message"] == "every judgment is a tie; no side to fit"


def test_all_ties_are_called_ties_by_the_default_rules(project):
    judge_all(project, [ComparisonFactory(prompt=PromptFactory(project=project)) for _ in range(3)],
              ["a1", "a2", "a3"], choice="tie")

    run = run_filter(project, {})

    assert run.status == "succeeded" and run.summary["kept"] == 3
    assert set(UnitVerdict.objects.filter(run=run).values_list("consensus", flat=True)) == {"tie"}


def test_rules_out_of_range_in_a_stored_run_fail_it_with_the_rules_message(project):
    simulated_crowd(project, units=5)
    run = FilterRun.objects.create(project=project, name="edited", version=1, rules={"min_confidence": 7})

    run = services.filter_run_execute(run_id=run.pk)

    assert run.status == "failed" and run.message == "min_confidence: must lie between 0 and 1 (got 7)"
    assert not UnitVerdict.objects.filter(run=run).exists()


def test_a_run_that_leaves_out_every_rater_says_so_not_that_there_are_no_judgments(project):
    judge_all(project, [ComparisonFactory(prompt=PromptFactory(project=project)) for _ in range(4)],
              ["a1", "a2", "a3"], choice="a")

    # everyone chose the left image every time: at this test level, each is flagged and left out
    run = run_filter(project, {"exclude_position_biased": True, "position_bias_p": 0.5})

    assert all(row["excluded"] for row in run.summary["raters"])
    assert run.message.startswith("these rules left out all 3 rater(s)") and "no judgments" not in run.message
