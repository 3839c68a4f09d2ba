"""Dataset exports, loaded back with pyarrow and Hugging Face datasets: columns and types as the
README documents them, filter verdicts respected, no usernames or emails, byte-identical reruns."""
import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from curation.exports.services import dataset_export_build, dataset_export_create
from curation.models import UnitVerdict
from tests.curation.export_data import PEOPLE, build_export_data

pytestmark = pytest.mark.django_db

PICKAPIC_COLUMNS = ["caption", "jpg_0", "jpg_1", "label_0", "label_1", "has_label", "are_different", "best_image_uid",
                    "image_0_uid", "image_1_uid", "model_0", "model_1", "user_id", "ranking_id", "created_at",
                    "image_0_url", "image_1_url", "aspect", "num_judgments", "confidence", "machine_label_0",
                    "num_machine_judgments"]


@pytest.fixture
def data(project):
    return build_export_data(project)


def export(data, tmp_path, fmt, *, container="parquet", name=None, run=True, **options):
    out = tmp_path / (name or f"{fmt}-{container}")
    created = dataset_export_create(project=data.project, format=fmt, container=container, destination=str(out),
                                    filter_run=data.run if run else None, options=options, anywhere=True,
                                    enqueue=False)
    built = dataset_export_build(export_id=created.pk)
    assert built.status == "succeeded", built.message
    return built, out


def load_hf(out: Path, config_glob: str, builder="parquet"):
    import datasets

    return datasets.load_dataset(builder, data_files=sorted(str(p) for p in out.glob(config_glob)), split="train",
                                 cache_dir=str(out.parent / f".hf-cache-{out.name}"))


def all_output_bytes(out: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file())


def test_pickapic_parquet_has_the_documented_columns_and_one_row_per_kept_consensus_pair(data, tmp_path):
    built, out = export(data, tmp_path, "pickapic")

    table = pq.read_table(sorted(out.glob("data/default/train-*.parquet")))
    kept = UnitVerdict.objects.filter(run=data.run, keep=True).order_by("id")
    assert table.column_names == PICKAPIC_COLUMNS
    assert table.num_rows == kept.count() == built.manifest["rows"]["default"]["train"]
    assert table.num_rows < len(data.comparisons)  # the unit with one judgment was dropped
    rows = table.to_pylist()
    by_comparison = {v.comparison_id: v for v in kept}
    for row, verdict in zip(rows, kept):
        comparison = next(c for c in data.comparisons if c.pk == verdict.comparison_id)
        assert row["ranking_id"] == comparison.pk and by_comparison[row["ranking_id"]].keep
        assert row["label_0"] == {"a": 1.0, "b": 0.0, "tie": 0.5}[verdict.consensus]
        assert row["label_0"] + row["label_1"] == 1.0
        assert row["image_0_uid"] == comparison.image_a.sha256 and row["image_1_uid"] == comparison.image_b.sha256
        assert row["jpg_0"] == data.image_bytes[row["image_0_uid"]]
        assert row["user_id"] is None and row["num_judgments"] == 4
        assert row["machine_label_0"] is None and row["num_machine_judgments"] == 0  # no machine judge here
    hf = load_hf(out, "data/default/*.parquet")
    assert hf.column_names == PICKAPIC_COLUMNS and len(hf) == table.num_rows
    assert hf.features["jpg_0"].dtype == "binary" and hf.features["label_0"].dtype == "float64"


def test_pickapic_judgment_rows_carry_pseudonyms_and_no_username_or_email(data, tmp_path):
    _, out = export(data, tmp_path, "pickapic", container="jsonl", rows="judgments")

    lines = [json.loads(line) for f in sorted(out.glob("data/default/*.jsonl")) for line in f.read_text().splitlines()]
    kept = set(UnitVerdict.objects.filter(run=data.run, keep=True).values_list("comparison__image_a__sha256",
                                                                                flat=True))
    assert lines and all(row["image_0_uid"] in kept for row in lines)  # only units the run kept
    pseudonyms = {str(u.annotator_profile.pseudonym) for u in data.people}
    assert {row["user_id"] for row in lines} <= pseudonyms and len({row["user_id"] for row in lines}) == 4
    everything = all_output_bytes(out)
    for username, email in PEOPLE:
        assert username.encode() not in everything and email.encode() not in everything
    first = lines[0]
    assert (out / first["jpg_0"]).read_bytes() == data.image_bytes[first["image_0_uid"]]
    hf = load_hf(out, "data/default/*.jsonl", builder="json")
    assert hf.column_names == PICKAPIC_COLUMNS and len(hf) == len(lines)
    assert hf.features["label_0"].dtype == "float64" and hf.features["user_id"].dtype == "string"


def test_the_same_inputs_give_byte_identical_files(data, tmp_path):
    first, out_1 = export(data, tmp_path, "pickapic", name="one")
    second, out_2 = export(data, tmp_path, "pickapic", name="two")

    files_1 = {p.relative_to(out_1): p.read_bytes() for p in out_1.rglob("*") if p.is_file()}
    files_2 = {p.relative_to(out_2): p.read_bytes() for p in out_2.rglob("*") if p.is_file()}
    assert files_1 == files_2 and len(files_1) >= 3


def test_the_manifest_lists_every_file_with_its_sha256_and_rows_and_the_card_has_a_yaml_header(data, tmp_path):
    built, out = export(data, tmp_path, "trl")

    manifest = json.loads((out / "manifest.json").read_text())
    on_disk = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert sorted(f["path"] for f in manifest["files"]) == on_disk
    for entry in manifest["files"]:
        assert hashlib.sha256((out / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]
    assert manifest["project"] == "cats" and manifest["filter_run"]["id"] == data.run.pk
    assert manifest["code_version"].startswith("prefstudio")
    shard = next(f for f in manifest["files"] if f["path"].endswith(".parquet"))
    assert shard["rows"] == pq.read_metadata(out / shard["path"]).num_rows
    card = (out / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["configs"][0]["data_files"][0]["path"] == "data/default/train-*.parquet"
    assert header["dataset_info"][0]["splits"][0]["num_examples"] == manifest["rows"]["default"]["train"]
    assert header["license"] == "other" and "Krippendorff" in card and "\"min_judgments\": 2" in card
    assert "| overall | " in card.split("Agreement per aspect")[1]


def test_trl_rows_are_the_kept_decided_pairs_with_chosen_and_rejected_images(data, tmp_path):
    _, out = export(data, tmp_path, "trl", container="webdataset")

    hf = load_hf(out, "data/default/*.tar", builder="webdataset")
    decided = UnitVerdict.objects.filter(run=data.run, keep=True, consensus__in=["a", "b"])
    assert len(hf) == decided.count()
    sample = hf[0]
    meta = sample["json"]
    assert set(meta) >= {"prompt", "margin", "chosen_uid", "rejected_uid", "aspect"}
    assert sample["chosen.jpg"].size == (40, 40)


def test_visionprefer_exports_each_prompts_images_with_scores_and_rationales_and_derived_pairs(data, tmp_path):
    _, out = export(data, tmp_path, "visionprefer", source="judge-llava")

    images = load_hf(out, "data/images/*.parquet")
    pairs = load_hf(out, "data/pairs/*.parquet")
    assert len(images) == 4
    row = images[0]
    assert len(row["images"]) == 3 and row["images"][0].size == (40, 40)
    assert row["aesthetic_rationale"][0].startswith("aesthetic looks fine")
    assert all(p["chosen_score"] > p["rejected_score"] for p in pairs)  # ties dropped, chosen is the higher
    kept = {frozenset((v.comparison.image_a.sha256, v.comparison.image_b.sha256))
            for v in UnitVerdict.objects.filter(run=data.run, keep=True).select_related("comparison__image_a",
                                                                                        "comparison__image_b")}
    assert all(frozenset((p["chosen_uid"], p["rejected_uid"])) in kept for p in pairs)


def test_pamela_has_five_splits_with_unseen_people_absent_from_train(data, tmp_path):
    heldout = str(data.people[0].annotator_profile.pseudonym)
    built, out = export(data, tmp_path, "pamela", run=False, unseen_people=[heldout], unseen_images=0.3)

    splits = {s: [row for f in sorted(out.glob(f"data/default/{s}-*.parquet")) for row in pq.read_table(f).to_pylist()]
              for s in ("train", "val_seen", "val_unseen", "test_seen", "test_unseen")}
    assert {s: len(rows) for s, rows in splits.items()} == built.manifest["rows"]["default"]
    assert sum(len(rows) for rows in splits.values()) == len(data.images) * len(data.people)
    assert all(row["user_id"] != heldout for row in splits["train"] + splits["val_seen"] + splits["test_seen"])
    assert {row["user_id"] for row in splits["val_unseen"] + splits["test_unseen"]} == {heldout}
    assert splits["val_seen"] or splits["test_seen"]
    consented = {str(u.annotator_profile.pseudonym) for u in data.people[:2]}
    for rows in splits.values():
        for row in rows:
            assert (row["nationality"] == "NL") == (row["user_id"] in consented)
            assert 1 <= row["rating"] <= data.project.rating_scale and row["generator"] in ("sd15", "sdxl", "dreamlike")
    everything = all_output_bytes(out)
    assert not any(name.encode() in everything or mail.encode() in everything for name, mail in PEOPLE)
    import datasets

    loaded = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf"))
    assert {name: len(split) for name, split in loaded.items()} == {s: len(rows) for s, rows in splits.items() if rows}


def test_pickapic_consensus_rows_carry_the_machine_judges_verdicts_on_the_pair(data, tmp_path):
    from annotation.models import MachineAnnotator, PreferenceJudgment, Source

    judges = [MachineAnnotator.objects.create(name=f"overall-judge-{k}", backend="openai_chat", model_ref="m",
                                              version="v1") for k in range(2)]
    rows, expected = [], {}
    for index, comparison in enumerate(data.comparisons):
        answers = [("a", comparison.image_a), ("b", comparison.image_b), ("tie", comparison.image_a)]
        mine = [answers[(index + k) % 3] for k in range(2)]  # each judge, one order each
        expected[comparison.pk] = sum({"a": 1.0, "b": 0.0, "tie": 0.5}[choice] for choice, _ in mine) / 2
        rows += [PreferenceJudgment(project=data.project, source=Source.MACHINE, machine_annotator=judge,
                                    machine_version="v1", comparison=comparison, aspect="overall", choice=choice,
                                    left_image=first) for judge, (choice, first) in zip(judges, mine)]
    PreferenceJudgment.objects.bulk_create(rows)

    _, out = export(data, tmp_path, "pickapic", images="reference")

    table = pq.read_table(sorted(out.glob("data/default/*.parquet"))).to_pylist()
    assert table
    for row in table:
        assert row["num_machine_judgments"] == 2 and row["num_judgments"] == 4  # human count unchanged
        assert row["machine_label_0"] == pytest.approx(expected[row["ranking_id"]])


def test_trl_margin_is_the_preference_strength_across_machine_judges(data, tmp_path):
    from annotation.models import MachineAnnotator, PreferenceJudgment, Source
    from curation import services as curation_services

    judges = [MachineAnnotator.objects.create(name=f"pair-judge-{k}", backend="openai_chat", model_ref="m",
                                              version="v1") for k in range(3)]
    rows = []
    for index, comparison in enumerate(data.comparisons):
        for k, judge in enumerate(judges):
            for first in (comparison.image_a, comparison.image_b):
                choice = "a" if (index + k) % 4 else "b"
                rows.append(PreferenceJudgment(project=data.project, source=Source.MACHINE, machine_annotator=judge,
                                               machine_version="v1", comparison=comparison, aspect="overall",
                                               choice=choice, left_image=first))
    PreferenceJudgment.objects.bulk_create(rows)
    run = curation_services.filter_run_create(project=data.project, name="with-judges", rules=data.run.rules)
    data.run = curation_services.filter_run_execute(run_id=run.pk)

    _, out = export(data, tmp_path, "trl", images="reference")

    strength = {frozenset((v.comparison.image_a.sha256, v.comparison.image_b.sha256)): v.strength
                for v in UnitVerdict.objects.filter(run=data.run, keep=True).select_related(
                    "comparison__image_a", "comparison__image_b")}
    rows = pq.read_table(sorted(out.glob("data/default/*.parquet"))).to_pylist()
    assert rows and all(s is not None for s in strength.values())
    for row in rows:
        assert row["margin"] == pytest.approx(strength[frozenset((row["chosen_uid"], row["rejected_uid"]))])
