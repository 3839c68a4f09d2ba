"""The filter run's checks on aspect scores and personal ratings, and the judge-side score checks,
over judgments in the database."""
import random

import pytest

from annotation.models import AspectScore, Image, MachineAnnotator, PersonalRating, PreferenceJudgment, Source
from tests.curation.test_filter_runs import run_filter
from tests.factories import ImageFactory, PromptFactory, UserFactory, prompts_with_all_pairs

pytestmark = pytest.mark.django_db


def scored_aesthetics(project, seed=2):
    """24 images (6 prompts x 4, every pair compared). People: "steady" scores the images' quality
    on 1..10, "generous" the same two points higher, "flip" like steady but picks the image it
    scored lower; steady and generous pick the higher. Machines: "good-scorer" scores the quality
    with a little noise and follows its scores in both orders, "noise-scorer" is random."""
    from annotation.models import Comparison

    prompts_with_all_pairs(project, prompts=6, images_per_prompt=4)
    rng = random.Random(seed)
    images = list(Image.objects.filter(project=project).order_by("id"))
    quality = {image.id: rng.gauss(0.0, 1.5) for image in images}
    comparisons = list(Comparison.objects.filter(project=project).order_by("id"))
    scores, pairs = [], []
    for name, offset, flip in [("steady", 0, False), ("generous", 2, False), ("flip", 0, True)]:
        user = UserFactory(username=name)
        given = {i.id: max(1, min(10, round(4 + quality[i.id] + offset + rng.gauss(0, 0.3)))) for i in images}
        scores += [AspectScore(project=project, source=Source.HUMAN, annotator=user, image=i, aspect="aesthetic",
                               value=given[i.id]) for i in images]
        for c in comparisons:
            a, b = given[c.image_a_id], given[c.image_b_id]
            choice = "tie" if a == b else ("a" if (a > b) != flip else "b")
            pairs.append(PreferenceJudgment(project=project, source=Source.HUMAN, annotator=user, comparison=c,
                                            aspect="aesthetic", choice=choice, left_image_id=c.image_a_id))
    for name in ("good-scorer", "noise-scorer"):
        judge = MachineAnnotator.objects.create(name=name, backend="openai_chat", model_ref="m", version=name[:16])
        given = {i.id: (quality[i.id] + rng.gauss(0, 0.1)) if name == "good-scorer" else rng.random()
                 for i in images}
        scores += [AspectScore(project=project, source=Source.MACHINE, machine_annotator=judge,
                               machine_version=judge.version, image=i, aspect="aesthetic", value=given[i.id])
                   for i in images]
        for c in comparisons:
            for left in (c.image_a_id, c.image_b_id):
                pairs.append(PreferenceJudgment(
                    project=project, source=Source.MACHINE, machine_annotator=judge, machine_version=judge.version,
                    comparison=c, aspect="aesthetic", left_image_id=left,
                    choice="a" if given[c.image_a_id] > given[c.image_b_id] else "b"))
    AspectScore.objects.bulk_create(scores)
    PreferenceJudgment.objects.bulk_create(pairs)


RULES = {"aspect": "aesthetic", "min_rater_agreement": None, "exclude_position_biased": False}


def test_zscored_aspect_scores_agree_better_than_raw_ones_when_a_rater_is_generous(project):
    scored_aesthetics(project)

    run = run_filter(project, RULES)

    (row,) = run.summary["aspect_scores"]["aspects"]
    assert (row["aspect"], row["scores"], row["images"], row["raters"]) == ("aesthetic", 72, 24, 3)
    assert row["alpha_z"] > 0.9 and row["alpha_z"] > row["alpha_raw"] + 0.2, row
    assert row["alpha_z_ci"][0] <= row["alpha_z"] <= row["alpha_z_ci"][1]


def test_each_persons_choices_are_checked_against_their_own_scores(project):
    scored_aesthetics(project)

    run = run_filter(project, RULES)

    raters = {row["rater"]: row for row in run.summary["rater_consistency"]["raters"]}
    assert raters["steady"]["scores_vs_choices"] == 1.0 and raters["generous"]["scores_vs_choices"] == 1.0
    assert raters["flip"]["scores_vs_choices"] == 0.0 and raters["flip"]["scores_vs_choices_n"] > 20


def test_a_judges_verdicts_against_its_own_scores_and_its_scores_against_the_humans(project):
    scored_aesthetics(project)

    run = run_filter(project, RULES)

    judges = {row["judge"]: row for row in run.summary["machine_judges"]}
    good = judges["good-scorer"]
    assert good["score_pair_agreement"] == 1.0 and good["score_pair_rows"] == 72 and good["score_aspect"] == "aesthetic"
    scores = {row["judge"]: row for row in run.summary["machine_scores"]["judges"]}
    assert scores["good-scorer"]["images"] == 24 and scores["good-scorer"]["plcc"] > 0.9
    assert scores["good-scorer"]["srcc"] > 0.9 and scores["noise-scorer"]["srcc"] < 0.5


def test_personal_ratings_are_retested_on_the_same_file_and_checked_against_overall_choices(project):
    from annotation.models import Comparison

    prompt, again = PromptFactory(project=project), PromptFactory(project=project)
    low, high = ImageFactory(prompt=prompt), ImageFactory(prompt=prompt)
    high_again = ImageFactory(prompt=again, sha256=high.sha256)  # the same file under another prompt
    comparison = Comparison.objects.create(project=project, prompt=prompt, image_a=low, image_b=high)
    pia = UserFactory(username="pia")
    for image, value in [(low, 2), (high, 8), (high_again, 6)]:
        PersonalRating.objects.create(project=project, source=Source.HUMAN, annotator=pia, image=image, value=value)
    for name in ("pia", "other"):
        PreferenceJudgment.objects.create(project=project, source=Source.HUMAN, annotator=UserFactory(username=name),
                                          comparison=comparison, choice="b", left_image=low)

    run = run_filter(project, {"min_rater_agreement": None})

    (pia_row,) = run.summary["rater_consistency"]["raters"]
    assert pia_row["rater"] == "pia" and pia_row["ratings_vs_choices"] == 1.0 and pia_row["ratings_vs_choices_n"] == 1
    assert pia_row["retest_pairs"] == 1 and pia_row["retest_mean_abs_diff"] == 2.0


def test_the_page_shows_the_score_checks_and_the_judges_own_consistency(project, researcher):
    from rest_framework.test import APIClient

    scored_aesthetics(project)
    run = run_filter(project, RULES)
    page = APIClient()
    page.force_login(researcher)

    html = page.get(f"/filter-runs/{run.pk}/").content.decode()

    assert 'data-testid="run-aspect-score-aesthetic"' in html and 'data-testid="run-consistency-flip"' in html
    assert 'data-testid="run-machine-score-good-scorer-aesthetic"' in html
    judge_row = html[html.index('data-testid="run-judge-good-scorer"'):]
    assert "1.00 of 72 (aesthetic)" in judge_row[:judge_row.index("</tr>")]


def test_a_machine_scorer_sharing_too_few_images_with_people_gets_no_correlation_and_a_reason(project, researcher):
    from rest_framework.test import APIClient

    images = [ImageFactory(prompt=PromptFactory(project=project)) for _ in range(4)]
    judge = MachineAnnotator.objects.create(name="clip", backend="clip", model_ref="m", version="v1")
    person = UserFactory(username="sam")
    for i, image in enumerate(images):
        AspectScore.objects.create(project=project, source=Source.MACHINE, machine_annotator=judge,
                                   machine_version="v1", image=image, aspect="aesthetic", value=0.1 * i)
    for image, value in zip(images[:2], (2, 4)):
        AspectScore.objects.create(project=project, source=Source.HUMAN, annotator=person, image=image,
                                   aspect="aesthetic", value=value)

    run = run_filter(project)

    (row,) = run.summary["machine_scores"]["judges"]
    assert (row["judge"], row["images"], row["plcc"], row["srcc"]) == ("clip", 0, None, None)
    assert row["message"] == "0 image(s) scored by it and by people; PLCC and SRCC need at least 3"
    page = APIClient()
    page.force_login(researcher)
    html = page.get(f"/filter-runs/{run.pk}/").content.decode()  # no pairwise judgments: the score checks still show
    assert 'data-testid="run-machine-score-clip-aesthetic"' in html and "PLCC and SRCC need at least 3" in html
