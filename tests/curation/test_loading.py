"""Loading judgments from the database into the curation arrays."""
import numpy as np
import pytest

from annotation.models import MachineAnnotator, PreferenceJudgment, Source
from curation.stats.judgments import CHOICE_A, CHOICE_B, CHOICE_TIE
from curation.loading import comparison_images_load, image_scores_load, pairwise_aspects, pairwise_judgments_load
from tests.factories import ComparisonFactory, PromptFactory, UserFactory

pytestmark = pytest.mark.django_db


def judge(comparison, *, user=None, machine=None, choice="a", left=None, aspect="overall", latency=None,
          retracted=False):
    from django.utils import timezone

    return PreferenceJudgment.objects.create(
        project=comparison.project, source=Source.HUMAN if user else Source.MACHINE, annotator=user,
        machine_annotator=machine, machine_version=machine.version if machine else "", comparison=comparison,
        aspect=aspect, choice=choice, left_image=left or comparison.image_a, latency_ms=latency,
        retracted_at=timezone.now() if retracted else None)


def test_human_judgments_load_as_dense_codes_with_sides_and_seconds(project):
    prompt = PromptFactory(project=project)
    first, second = ComparisonFactory(prompt=prompt), ComparisonFactory(prompt=prompt)
    ann, bob = UserFactory(username="ann"), UserFactory(username="bob")
    machine = MachineAnnotator.objects.create(name="m", backend="openai_chat", model_ref="x", version="v1")
    judge(first, user=ann, choice="a", latency=1500)
    judge(first, user=bob, choice="b", left=first.image_b)
    judge(second, user=ann, choice="tie", latency=800)
    judge(second, user=bob, choice="a", retracted=True)  # undone: not loaded
    judge(second, user=bob, choice="b", aspect="aesthetic")  # another aspect
    judge(second, machine=machine, choice="a")  # a machine: not a human

    loaded = pairwise_judgments_load(project_id=project.id)

    j = loaded.judgments
    assert len(j) == 3 and j.n_units == 2 and j.n_raters == 2
    assert list(loaded.comparison_ids[j.unit]) == [first.id, first.id, second.id]
    assert list(loaded.rater_ids[j.rater]) == [ann.id, bob.id, ann.id]
    assert list(j.choice) == [CHOICE_A, CHOICE_B, CHOICE_TIE]
    assert list(j.left_is_a) == [True, False, True]
    assert j.seconds[0] == 1.5 and np.isnan(j.seconds[1]) and j.seconds[2] == 0.8


def test_machine_judgments_load_under_negative_rater_ids_and_one_version(project):
    comparison = ComparisonFactory(prompt=PromptFactory(project=project))
    machine = MachineAnnotator.objects.create(name="m", backend="openai_chat", model_ref="x", version="v1")
    judge(comparison, machine=machine, choice="b")
    judge(comparison, user=UserFactory(username="ann"), choice="a")

    loaded = pairwise_judgments_load(project_id=project.id, source="machine", machine_version="v1")

    assert list(loaded.rater_ids) == [-machine.id] and list(loaded.judgments.choice) == [CHOICE_B]
    assert len(pairwise_judgments_load(project_id=project.id, source="machine", machine_version="v2").judgments) == 0


def test_a_project_without_judgments_loads_empty_arrays(project):
    loaded = pairwise_judgments_load(project_id=project.id)

    assert len(loaded.judgments) == 0 and loaded.judgments.n_units == 0


def test_an_unknown_source_is_refused_by_name(project):
    with pytest.raises(ValueError, match="source must be one of human, machine, all"):
        pairwise_judgments_load(project_id=project.id, source="crowd")


def test_aspects_with_live_human_judgments_are_listed(project):
    comparison = ComparisonFactory(prompt=PromptFactory(project=project))
    ann = UserFactory(username="ann")
    judge(comparison, user=ann, aspect="aesthetic")
    judge(comparison, user=ann, aspect="fidelity", retracted=True)

    assert pairwise_aspects(project_id=project.id) == ["aesthetic"]


def test_comparison_images_read_minus_one_for_a_deleted_comparison(project):
    prompt = PromptFactory(project=project)
    kept, gone = ComparisonFactory(prompt=prompt), ComparisonFactory(prompt=prompt)
    ids = np.array(sorted([kept.id, gone.id]))
    gone.image_b.delete()  # cascades to the comparison

    images = comparison_images_load(project_id=project.id, comparison_ids=ids)

    row = list(ids).index(kept.id)
    assert (images.image_a[row], images.image_b[row], images.prompt[row]) == (kept.image_a_id, kept.image_b_id,
                                                                             prompt.id)
    assert list(images.missing) == [ids[i] == gone.id for i in range(2)]


def test_scores_load_with_aspect_codes_and_one_content_code_per_file(project):
    from annotation.models import AspectScore, PersonalRating
    from tests.factories import ImageFactory

    first = ImageFactory(prompt=PromptFactory(project=project), sha256="f" * 64)
    same_file = ImageFactory(prompt=PromptFactory(project=project), sha256="f" * 64)
    other = ImageFactory(prompt=first.prompt)
    ann = UserFactory(username="ann")
    for image, aspect, value in [(first, "aesthetic", 4), (same_file, "aesthetic", 5), (other, "fidelity", 2),
                                 (other, "harmlessness", 3)]:
        AspectScore.objects.create(project=project, source=Source.HUMAN, annotator=ann, image=image, aspect=aspect,
                                   value=value)
    PersonalRating.objects.create(project=project, source=Source.HUMAN, annotator=ann, image=other, value=7)

    scores = image_scores_load(project_id=project.id, aspects=["aesthetic", "fidelity"])
    ratings = image_scores_load(project_id=project.id, kind="personal_rating")

    assert list(scores.image_ids[scores.image]) == [first.id, same_file.id, other.id]  # harmlessness left out
    assert list(scores.aspect) == [0, 0, 1] and list(scores.value) == [4.0, 5.0, 2.0]
    assert scores.content[0] == scores.content[1] != scores.content[2]
    assert list(scores.rater_ids) == [ann.id]
    assert list(ratings.value) == [7.0] and ratings.aspects == ("",)
