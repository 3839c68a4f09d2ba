"""Pairwise formats: Pick-a-Pic (one row per consensus pair or per human judgment) and TRL
(prompt / chosen / rejected / margin). Image 0 and image 1 are a comparison's images in its
canonical order; uids are the images' sha256."""
from __future__ import annotations

import pyarrow as pa

from curation.exports.options import ExportOptions
from curation.exports.sources import epoch_us, pseudonym, pseudonyms_ensure, scalar, stream, timestamp
from curation.selectors import live_human_sql, live_judgment_sql
from curation.exports.tables import TIMESTAMP, ImageColumn, Table, column_batches
from curation.models import FilterRun

_LABELS = {"a": (1.0, 0.0), "b": (0.0, 1.0), "tie": (0.5, 0.5)}

_PAIR_JOINS = ("JOIN annotation_comparison c ON c.id = {src}.comparison_id "
               "JOIN annotation_image ia ON ia.id = c.image_a_id JOIN annotation_image ib ON ib.id = c.image_b_id "
               "JOIN annotation_prompt p ON p.id = c.prompt_id")
_PAIR_COLUMNS = "p.text, ia.sha256, ib.sha256, ia.storage_key, ib.storage_key, ia.generator, ib.generator"

PICKAPIC_FIELDS = [
    ("caption", pa.string()), ("jpg_0", pa.binary()), ("jpg_1", pa.binary()), ("label_0", pa.float64()),
    ("label_1", pa.float64()), ("has_label", pa.bool_()), ("are_different", pa.bool_()),
    ("best_image_uid", pa.string()), ("image_0_uid", pa.string()), ("image_1_uid", pa.string()),
    ("model_0", pa.string()), ("model_1", pa.string()), ("user_id", pa.string()), ("ranking_id", pa.int64()),
    ("created_at", TIMESTAMP), ("image_0_url", pa.string()), ("image_1_url", pa.string()), ("aspect", pa.string()),
    ("num_judgments", pa.int64()), ("confidence", pa.float64()), ("machine_label_0", pa.float64()),
    ("num_machine_judgments", pa.int64()),
]
PICKAPIC_IMAGES = (ImageColumn("jpg_0", key="_key_0", uid="image_0_uid", url="image_0_url"),
                   ImageColumn("jpg_1", key="_key_1", uid="image_1_uid", url="image_1_url"))
PICKAPIC_COLUMNS = {
    "caption": "the prompt", "jpg_0": "image 0 as stored (bytes)", "jpg_1": "image 1 as stored (bytes)",
    "label_0": "1 if image 0 is preferred, 0 if image 1 is, 0.5 for a tie", "label_1": "1 - label_0",
    "has_label": "always true", "are_different": "the two images differ (by content)",
    "best_image_uid": "uid of the preferred image; empty for a tie", "image_0_uid": "sha256 of image 0",
    "image_1_uid": "sha256 of image 1", "model_0": "generator of image 0", "model_1": "generator of image 1",
    "user_id": "the rater's stable pseudonym (judgment rows); null on consensus rows",
    "ranking_id": "judgment id (judgment rows) or comparison id (consensus rows)",
    "created_at": "when the judgment was made (the latest one for a consensus row)",
    "image_0_url": "where image 0 lies in storage", "image_1_url": "where image 1 lies in storage",
    "aspect": "the aspect judged", "num_judgments": "human judgments behind the row",
    "confidence": "the filter run's confidence in the consensus (consensus rows)",
    "machine_label_0": "the machine judges' label_0 on the pair: the mean over their verdicts on the aspect (1 image 0, "
                       "0 image 1, 0.5 tie), every sample and order counted; null without machine verdicts or on "
                       "judgment rows",
    "num_machine_judgments": "machine verdicts behind machine_label_0",
}


# The columns `convert` gives a Pick-a-Pic row (both row kinds), image keys last.
_PICKAPIC_BATCH = ["caption", "label_0", "label_1", "has_label", "are_different", "best_image_uid", "image_0_uid",
                   "image_1_uid", "model_0", "model_1", "user_id", "ranking_id", "created_at", "aspect",
                   "num_judgments", "confidence", "machine_label_0", "num_machine_judgments", "_key_0", "_key_1"]


def pickapic_tables(*, project, run: FilterRun | None, options: ExportOptions) -> list[Table]:
    if options.rows == "consensus":  # a filter run is named (checked by the export service)
        return [_pickapic_consensus(run, options)]
    return [_pickapic_judgments(project, run, options)]


def _labels(choice: str, uid_0: str, uid_1: str):
    label_0, label_1 = _LABELS[choice]
    best = uid_0 if choice == "a" else uid_1 if choice == "b" else ""
    return label_0, label_1, best


def _pickapic_consensus(run: FilterRun, options: ExportOptions) -> Table:
    aspect = run.rules.get("aspect", "overall")
    where = "v.run_id = %s AND v.keep AND v.consensus IN ('a', 'b', 'tie')"
    # The judgment counts and times come from aggregates joined in, not a subquery per row.
    sql = (f"SELECT v.id, c.id, v.consensus, v.confidence, {_PAIR_COLUMNS}, {epoch_us('agg.last_at')}, COALESCE(agg.n, 0), "
           f"machine.label, COALESCE(machine.n, 0) "
           f"FROM curation_unitverdict v {_PAIR_JOINS.format(src='v')} "
           f"LEFT JOIN (SELECT j.comparison_id, MAX(j.created_at) AS last_at, COUNT(*) AS n "
           f"FROM annotation_preferencejudgment j WHERE j.project_id = %s AND j.aspect = %s AND {live_human_sql('j')} "
           f"GROUP BY j.comparison_id) agg ON agg.comparison_id = c.id "
           f"LEFT JOIN (SELECT m.comparison_id, AVG(CASE m.choice WHEN 'a' THEN 1.0 WHEN 'b' THEN 0.0 ELSE 0.5 END) "
           f"AS label, COUNT(*) AS n FROM annotation_preferencejudgment m WHERE m.project_id = %s AND m.aspect = %s "
           f"AND m.source = 'machine' AND {live_judgment_sql('m')} GROUP BY m.comparison_id) machine "
           f"ON machine.comparison_id = c.id WHERE {where} ORDER BY v.id")
    count = scalar(f"SELECT COUNT(*) FROM curation_unitverdict v WHERE {where}", [run.pk])

    def convert(row):
        (_, comparison_id, consensus, confidence, caption, uid_0, uid_1, key_0, key_1, model_0, model_1,
         created_at, n, machine_label, machine_n) = row
        label_0, label_1, best = _labels(consensus, uid_0, uid_1)
        return (caption, label_0, label_1, True, uid_0 != uid_1, best, uid_0, uid_1, model_0, model_1, None,
                comparison_id, timestamp(created_at), aspect, n, confidence,
                None if machine_label is None else float(machine_label), machine_n, key_0, key_1)

    return Table(config="default", split="train", fields=PICKAPIC_FIELDS, images=PICKAPIC_IMAGES, count=count,
                 batches=lambda: column_batches(stream(sql, [run.project_id, aspect, run.project_id, aspect, run.pk]),
                                                _PICKAPIC_BATCH,
                                                convert),
                 description=PICKAPIC_COLUMNS)


def _pickapic_judgments(project, run: FilterRun | None, options: ExportOptions) -> Table:
    """One row per live human judgment on the aspect; with a filter run, only on the units it kept
    and not from the raters it left out."""
    aspect = run.rules.get("aspect", "overall") if run is not None else options.aspect
    pseudonyms_ensure(table="annotation_preferencejudgment", project_id=project.pk)
    ceiling = scalar("SELECT MAX(id) FROM annotation_preferencejudgment WHERE project_id = %s", [project.pk]) or 0
    where = f"j.project_id = %s AND j.aspect = %s AND {live_human_sql('j')} AND j.id <= %s"
    params = [project.pk, aspect, ceiling]
    join_run = ""
    if run is not None:
        join_run = "JOIN curation_unitverdict v ON v.comparison_id = j.comparison_id AND v.run_id = %s AND v.keep "
        params = [run.pk, *params]
        excluded = excluded_rater_ids(run)
        if excluded:
            where += f" AND j.annotator_id NOT IN ({', '.join(str(int(i)) for i in excluded)})"
    sql = (f"SELECT j.id, j.choice, {epoch_us('j.created_at')}, prof.pseudonym, {_PAIR_COLUMNS} "
           f"FROM annotation_preferencejudgment j {join_run}{_PAIR_JOINS.format(src='j')} "
           f"JOIN annotation_annotatorprofile prof ON prof.user_id = j.annotator_id "
           f"WHERE {where} ORDER BY j.id")
    count = scalar(f"SELECT COUNT(*) FROM annotation_preferencejudgment j {join_run}WHERE {where}", params)

    def convert(row):
        judgment_id, choice, created_at, person, caption, uid_0, uid_1, key_0, key_1, model_0, model_1 = row
        label_0, label_1, best = _labels(choice, uid_0, uid_1)
        return (caption, label_0, label_1, True, uid_0 != uid_1, best, uid_0, uid_1, model_0, model_1,
                pseudonym(person), judgment_id, timestamp(created_at), aspect, 1, None, None, 0, key_0, key_1)

    return Table(config="default", split="train", fields=PICKAPIC_FIELDS, images=PICKAPIC_IMAGES, count=count,
                 batches=lambda: column_batches(stream(sql, params), _PICKAPIC_BATCH, convert),
                 description=PICKAPIC_COLUMNS)


def excluded_rater_ids(run: FilterRun) -> list[int]:
    """The people a filter run left out of its consensus."""
    from django.contrib.auth import get_user_model

    names = [r["rater"] for r in run.summary.get("raters", []) if r.get("excluded")]
    return list(get_user_model().objects.filter(username__in=names).values_list("id", flat=True))


TRL_FIELDS = [("prompt", pa.string()), ("chosen", pa.binary()), ("rejected", pa.binary()), ("margin", pa.float64()),
              ("chosen_uid", pa.string()), ("rejected_uid", pa.string()), ("chosen_url", pa.string()),
              ("rejected_url", pa.string()), ("aspect", pa.string())]
TRL_IMAGES = (ImageColumn("chosen", key="_key_chosen", uid="chosen_uid", url="chosen_url", feature="image"),
              ImageColumn("rejected", key="_key_rejected", uid="rejected_uid", url="rejected_url", feature="image"))
TRL_COLUMNS = {
    "prompt": "the prompt", "chosen": "the preferred image (HF Image)", "rejected": "the other image (HF Image)",
    "margin": "preference strength: the machine judges' mean z-normalised score difference where the filter run "
              "measured it, else the consensus margin 2 * confidence - 1",
    "chosen_uid": "sha256 of the chosen image", "rejected_uid": "sha256 of the rejected image",
    "chosen_url": "where the chosen image lies in storage", "rejected_url": "where the rejected image lies",
    "aspect": "the aspect judged",
}


def trl_tables(*, project, run: FilterRun | None, options: ExportOptions) -> list[Table]:
    """A filter run's kept pairs with a side chosen (ties have no chosen image); `run` is named
    (checked by the export service)."""
    aspect = run.rules.get("aspect", "overall")
    where = "v.run_id = %s AND v.keep AND v.consensus IN ('a', 'b')"
    sql = (f"SELECT v.id, v.consensus, v.confidence, v.strength, {_PAIR_COLUMNS} "
           f"FROM curation_unitverdict v {_PAIR_JOINS.format(src='v')} WHERE {where} ORDER BY v.id")
    count = scalar(f"SELECT COUNT(*) FROM curation_unitverdict v WHERE {where}", [run.pk])

    def convert(row):
        _, consensus, confidence, strength, caption, uid_0, uid_1, key_0, key_1, _m0, _m1 = row
        if consensus == "b":
            uid_0, uid_1, key_0, key_1 = uid_1, uid_0, key_1, key_0
        margin = strength if strength is not None else (2 * confidence - 1 if confidence is not None else None)
        return caption, margin, uid_0, uid_1, aspect, key_0, key_1

    names = ["prompt", "margin", "chosen_uid", "rejected_uid", "aspect", "_key_chosen", "_key_rejected"]
    return [Table(config="default", split="train", fields=TRL_FIELDS, images=TRL_IMAGES, count=count,
                  batches=lambda: column_batches(stream(sql, [run.pk]), names, convert), description=TRL_COLUMNS)]
