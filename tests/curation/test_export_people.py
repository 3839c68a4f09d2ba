"""People in exports: the pseudonym a researcher sees in the members list is the one a PAMELA
row carries, and the default share of unseen people holds out one person when it would hold out
no one (never the only person)."""
import json
import uuid

import pyarrow.parquet as pq
import pytest

from annotation.image_files import check_and_store
from annotation.models import AnnotatorProfile, Image, PersonalRating, Prompt, Source
from annotation.services import profile_update
from curation.exports.per_image import PAMELA_SPLITS, PamelaSplitter
from curation.exports.services import dataset_export_build, dataset_export_create
from tests.conftest import client_for
from tests.curation.export_data import build_export_data, jpeg
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

# Pseudonyms whose draws for seed 0 are all above the default share of 0.1 (checked in the test).
ABOVE_THE_SHARE = [uuid.UUID(int=2), uuid.UUID(int=3), uuid.UUID(int=4)]


def pamela_export(project, tmp_path, **options):
    out = tmp_path / "pamela"
    created = dataset_export_create(project=project, format="pamela", container="parquet", destination=str(out),
                                    options={"images": "reference", **options}, anywhere=True, enqueue=False)
    built = dataset_export_build(export_id=created.pk)
    assert built.status == "succeeded", built.message
    rows = {split: [row for f in sorted(out.glob(f"data/default/{split}-*.parquet"))
                    for row in pq.read_table(f).to_pylist()] for split in PAMELA_SPLITS}
    return built, out, rows


def consented_raters(project, pseudonyms, *, images=3):
    """People who consented and rated every one of `images` images, with the given pseudonyms."""
    prompt = Prompt.objects.create(project=project, text="a red barn", text_sha256="f" * 64)
    stored = [check_and_store(jpeg((30 * i, 90, 160))) for i in range(images)]
    shown = [Image.objects.create(project=project, prompt=prompt, sha256=s.sha256, storage_key=s.storage_key,
                                  preview_key=s.preview_key, format=s.format, width=s.width, height=s.height,
                                  size_bytes=s.size_bytes, generator="sdxl", seed=i) for i, s in enumerate(stored)]
    people = []
    for index, name in enumerate(pseudonyms):
        user = MembershipFactory(project=project, user=UserFactory(username=f"rater{index}")).user
        profile_update(user=user, consent=True, nationality="NL")
        AnnotatorProfile.objects.filter(user=user).update(pseudonym=name)
        people.append(user)
    PersonalRating.objects.bulk_create([
        PersonalRating(project=project, source=Source.HUMAN, annotator=user, image=image, value=1 + (i + j) % 5)
        for i, user in enumerate(people) for j, image in enumerate(shown)])
    return people


def test_the_members_list_names_each_person_by_the_pseudonym_their_pamela_rows_carry(researcher, project, tmp_path):
    data = build_export_data(project)

    members = client_for(researcher).get("/api/v1/projects/cats/members/").json()["results"]
    _, _, rows = pamela_export(project, tmp_path)

    listed = {m["username"]: m["pseudonym"] for m in members}
    exported = {}
    for row in (row for split in rows.values() for row in split):
        exported.setdefault(row["user_id"], set()).add((row["image_uid"], row["rating"]))
    for person in data.people:  # one of them had no profile before the members list gave them one
        theirs = {(r.image.sha256, r.value) for r in PersonalRating.objects.filter(annotator=person)
                  .select_related("image")}
        assert exported[listed[person.username]] == theirs


def test_default_share_that_holds_out_no_one_of_three_people_holds_out_the_lowest_draw_and_says_so(project, tmp_path):
    consented_raters(project, ABOVE_THE_SHARE)
    assert all(PamelaSplitter._draw(0, "person", str(p)) >= 0.1 for p in ABOVE_THE_SHARE)  # the share alone: none

    built, out, rows = pamela_export(project, tmp_path)

    picked = str(min(ABOVE_THE_SHARE, key=lambda p: PamelaSplitter._draw(0, "person", str(p))))
    unseen = rows["val_unseen"] + rows["test_unseen"]
    assert unseen and {row["user_id"] for row in unseen} == {picked}
    assert picked not in {row["user_id"] for split in ("train", "val_seen", "test_seen") for row in rows[split]}
    assert rows["train"]
    note = built.manifest["notes"][0]
    assert "holds out no one" in note and picked in note and note in built.message
    assert note in (out / "README.md").read_text()
    assert json.loads((out / "manifest.json").read_text())["notes"] == [note]


def test_the_only_person_is_never_held_out_and_the_export_says_why(project, tmp_path):
    consented_raters(project, [uuid.UUID(int=1)])
    assert PamelaSplitter._draw(0, "person", str(uuid.UUID(int=1))) < 0.1  # the share alone would hold them out

    built, out, rows = pamela_export(project, tmp_path)

    assert not rows["val_unseen"] and not rows["test_unseen"] and rows["train"]
    assert "Only one person rated" in built.manifest["notes"][0] and "nothing to train on" in built.message
    assert "val_unseen and test_unseen are empty" in (out / "README.md").read_text()


def test_an_explicit_list_of_unseen_people_is_used_as_given(project, tmp_path):
    consented_raters(project, ABOVE_THE_SHARE)

    built, _, rows = pamela_export(project, tmp_path, unseen_people=[])

    assert not rows["val_unseen"] and not rows["test_unseen"]
    assert built.manifest["notes"] == [] and built.message == ""
