"""A small project with everything the export formats read: real stored images, human pairwise
judgments with a filter run over them, human and machine aspect scores, and personal ratings from
people with and without a consented profile."""
import io
import random
from dataclasses import dataclass, field
from itertools import combinations

from PIL import Image as PILImage

from annotation.image_files import check_and_store
from annotation.models import (
    AnnotatorProfile, AspectScore, Comparison, Image, MachineAnnotator, PersonalRating, PreferenceJudgment, Prompt,
    Source,
)
from annotation.services import profile_update
from curation import services as curation_services
from curation.models import FilterRun
from tests.conftest import wait_for
from tests.factories import MembershipFactory, UserFactory

# Usernames and emails that must never appear in an export.
PEOPLE = [("alice.secretname", "alice.private@example.org"), ("bob.hiddenuser", "bob.private@example.org"),
          ("carol.nobodyknows", "carol.private@example.org"), ("dave.undisclosed", "dave.private@example.org")]


@dataclass
class ExportData:
    project: object
    run: object = None
    images: list = field(default_factory=list)
    comparisons: list = field(default_factory=list)
    people: list = field(default_factory=list)
    machine: object = None
    image_bytes: dict = field(default_factory=dict)  # sha256 -> stored original bytes


def jpeg(color, size=40) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", (size, size), color).save(out, format="JPEG", quality=90)
    return out.getvalue()


def build_export_data(project, *, prompts=4, images_per_prompt=3, seed=1) -> ExportData:
    rng = random.Random(seed)
    data = ExportData(project=project)
    for p in range(prompts):
        prompt = Prompt.objects.create(project=project, text=f"a lighthouse at dusk, take {p}", category="scenes",
                                       external_id=f"ext-{p}", text_sha256=f"{p:064x}")
        images = []
        for i in range(images_per_prompt):
            raw = jpeg((40 * p + 10, 60 * i + 20, 90))
            stored = check_and_store(raw)
            image = Image.objects.create(
                project=project, prompt=prompt, sha256=stored.sha256, storage_key=stored.storage_key,
                preview_key=stored.preview_key, format=stored.format, width=stored.width, height=stored.height,
                size_bytes=stored.size_bytes, generator=["sd15", "sdxl", "dreamlike"][i % 3], seed=i)
            data.image_bytes[stored.sha256] = raw
            images.append(image)
        data.images += images
        for image_a, image_b in combinations(images, 2):
            data.comparisons.append(Comparison.objects.create(project=project, prompt=prompt, image_a=image_a,
                                                              image_b=image_b))
    for index, (username, email) in enumerate(PEOPLE):
        user = MembershipFactory(project=project, user=UserFactory(username=username, email=email)).user
        if index < 2:  # two consented with demographics; one has a bare profile; one has none at all
            profile_update(user=user, consent=True, age_band="25-34", gender="female" if index else "male",
                           nationality="NL")
        elif index == 2:
            AnnotatorProfile.objects.create(user=user)
        data.people.append(user)

    judgments = []
    for c_index, comparison in enumerate(data.comparisons):
        truth = "a" if c_index % 3 else "b"
        raters = data.people if c_index != 0 else data.people[:1]  # the first unit gets one judgment: dropped
        for user in raters:
            a_left = rng.random() < 0.5
            choice = truth if rng.random() < 0.9 else "tie"
            judgments.append(PreferenceJudgment(
                project=project, source=Source.HUMAN, annotator=user, comparison=comparison, aspect="overall",
                choice=choice, left_image=comparison.image_a if a_left else comparison.image_b, latency_ms=900))
    PreferenceJudgment.objects.bulk_create(judgments)

    data.machine = MachineAnnotator.objects.create(name="judge-llava", backend="openai_chat", model_ref="m",
                                                   version="v1")
    scores, ratings = [], []
    for i_index, image in enumerate(data.images):
        for aspect in project.aspect_keys:
            for user in data.people[:2]:
                scores.append(AspectScore(project=project, source=Source.HUMAN, annotator=user, image=image,
                                          aspect=aspect, value=float(1 + (i_index + len(aspect)) % 5)))
            scores.append(AspectScore(project=project, source=Source.MACHINE, machine_annotator=data.machine,
                                      machine_version="v1", image=image, aspect=aspect,
                                      value=float(1 + (i_index * 7 + len(aspect)) % 5),
                                      rationale=f"{aspect} looks fine in image {i_index}"))
        for user in data.people:
            ratings.append(PersonalRating(project=project, source=Source.HUMAN, annotator=user, image=image,
                                          value=1 + rng.randrange(project.rating_scale)))
    AspectScore.objects.bulk_create(scores)
    PersonalRating.objects.bulk_create(ratings)

    run = curation_services.filter_run_create(
        project=project, name="export-test", rules={"consensus": "majority", "min_judgments": 2,
                                                    "exclude_position_biased": False, "min_rater_agreement": None})
    curation_services.filter_run_execute(run_id=run.pk)  # here, unless a test's worker took it first
    data.run = wait_for(lambda: (r := FilterRun.objects.get(pk=run.pk)).is_finished and r, what="the filter run")
    assert data.run.status == "succeeded", data.run.message
    return data
