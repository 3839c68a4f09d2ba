"""The demo's simulated crowd (curation/demo_crowd.py): each simulated rater kind answers as its
name says, the crowd's judgments go through the work services, and the default filter run finds
the truth the demo images carry in their meta."""
import math
import random
from collections import Counter

import pytest

from curation.simulation import CrowdComposition, rater_answer
from curation.stats.judgments import CHOICE_A, CHOICE_B, CHOICE_TIE
from tests.annotation.test_demo import drawn_demo  # noqa: F401  (the demo's drawing, once a session)

COMPOSITION = CrowdComposition("test", tie_press=0.05, hard_skill=0.3)


def answers(kind, *, skill=0.9, truth=CHOICE_A, left=CHOICE_B, hard=False, n=2000) -> Counter:
    rng = random.Random(11)
    return Counter(rater_answer(COMPOSITION, kind, skill=skill, truth=truth, left=left, hard=hard, rng=rng)
                   for _ in range(n))


def test_an_always_left_rater_answers_the_side_shown_on_the_left_whatever_the_truth():
    assert answers("always_left", truth=CHOICE_A, left=CHOICE_B) == Counter({CHOICE_B: 2000})
    assert answers("always_left", truth=CHOICE_B, left=CHOICE_A) == Counter({CHOICE_A: 2000})


def test_a_random_rater_answers_a_b_and_tie_about_equally_often():
    counts = answers("random")
    assert set(counts) == {CHOICE_A, CHOICE_B, CHOICE_TIE}
    assert all(abs(n / 2000 - 1 / 3) < 0.05 for n in counts.values())


def test_an_adversary_answers_the_wrong_side():
    assert answers("adversarial", truth=CHOICE_A) == Counter({CHOICE_B: 2000})


def test_a_reliable_rater_is_right_at_their_skill_less_the_tie_presses_and_near_a_coin_on_hard_units():
    easy = answers("reliable", skill=0.9)
    assert abs(easy[CHOICE_A] / 2000 - 0.95 * 0.9) < 0.03
    assert abs(easy[CHOICE_TIE] / 2000 - 0.05) < 0.02
    hard = answers("reliable", skill=0.9, hard=True)
    assert abs(hard[CHOICE_A] / 2000 - 0.95 * (0.5 + 0.4 * 0.3)) < 0.03


def test_the_composition_names_each_raters_kind_and_draws_skills_in_their_kinds_range():
    composition = CrowdComposition("test", reliable=2, sloppy=1, random=1, always_left=1)
    rng = random.Random(3)

    assert composition.kinds == ["reliable", "reliable", "sloppy", "random", "always_left"]
    assert composition.reliable_accuracy[0] <= composition.skill("reliable", rng) <= composition.reliable_accuracy[1]
    assert composition.sloppy_accuracy[0] <= composition.skill("sloppy", rng) <= composition.sloppy_accuracy[1]
    assert composition.skill("random", rng) == 0.5


@pytest.fixture
def crowd_settings(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.EXPORT_ROOT = str(tmp_path / "exports")
    settings.EXPORT_STAGING_DIR = str(tmp_path / "export-staging")
    settings.IMPORT_PREVIEW_LONG_SIDE = 96
    return settings


@pytest.mark.django_db
def test_the_simulated_crowds_default_run_finds_the_truth_of_most_pairs_whose_images_differ_in_quality(
        crowd_settings, drawn_demo, researcher):  # noqa: F811
    from annotation.models import Image
    from curation.demo_crowd import _appeal, simulated_crowd_seed
    from curation.models import UnitVerdict

    seeded = simulated_crowd_seed(researcher=researcher, images_dir=drawn_demo.parent)

    appeal = {i: _appeal(meta, sha) for i, meta, sha in
              Image.objects.filter(project=seeded.project).values_list("id", "meta", "sha256")}
    right = []
    for verdict in UnitVerdict.objects.filter(run=seeded.run).select_related("comparison"):
        a, b = appeal[verdict.comparison.image_a_id], appeal[verdict.comparison.image_b_id]
        if math.floor(a) != math.floor(b):  # one image shows the prompt or is clean where the other is not
            right.append(verdict.consensus == ("a" if a > b else "b"))
    assert len(right) >= 50
    assert sum(right) / len(right) >= 0.85


@pytest.mark.django_db
def test_seeding_the_simulated_crowd_again_writes_nothing_new(crowd_settings, drawn_demo, researcher):  # noqa: F811
    from annotation.models import Assignment, PreferenceJudgment, Submission
    from curation.demo_crowd import simulated_crowd_seed
    from curation.models import DatasetExport, FilterRun

    def counts():
        return [m.objects.count() for m in (Assignment, Submission, PreferenceJudgment, FilterRun, DatasetExport)]

    first = simulated_crowd_seed(researcher=researcher, images_dir=drawn_demo.parent)
    before = counts()

    again = simulated_crowd_seed(researcher=researcher, images_dir=drawn_demo.parent)

    assert counts() == before
    assert (again.run.pk, again.export.pk) == (first.run.pk, first.export.pk)
