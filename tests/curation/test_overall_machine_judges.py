"""A machine judge asked the project's pairwise question (aspect "overall") by an auto-annotation
job is weighed by a default filter run, and its preference strength reaches the exports."""
import hashlib
import json

import pyarrow.parquet as pq
import pytest

from curation import services as curation_services
from curation.exports.services import dataset_export_build, dataset_export_create
from curation.models import UnitVerdict
from mlworkers import runner
from mlworkers import services as ml_services
from tests.curation.export_data import build_export_data
from tests.mlworkers.chat_server import Reply
from tests.mlworkers.conftest import chat_server  # noqa: F401  (a fixture)

pytestmark = pytest.mark.django_db

CONTRADICTED = {2, 7}  # units (by index) on which the judge names the other side than the people's truth


@pytest.fixture
def judged(project, chat_server):  # noqa: F811
    """The export test data (12 pairs with human "overall" judgments, truth a unless the index is a
    multiple of 3) and an `openai_chat` judge's "overall" pairs job over it, run in-process: the
    judge recognises the images it is sent, names the true winner in both orders, except on the
    CONTRADICTED units. Returns the data and, per comparison id, the side the judge named."""
    data = build_export_data(project)
    named = {}
    for index, comparison in enumerate(data.comparisons):
        side = "a" if index % 3 else "b"
        if index in CONTRADICTED:
            side = "b" if side == "a" else "a"
        named[comparison.pk] = side
    winner = {frozenset((c.image_a.sha256, c.image_b.sha256)): (c.image_a if named[c.pk] == "a" else c.image_b).sha256
              for c in data.comparisons}

    def answer(request):
        first, second = (hashlib.sha256(image).hexdigest() for image in request.images)
        choice = "first" if winner[frozenset((first, second))] == first else "second"
        return Reply.chat(json.dumps({"overall": {"choice": choice, "rationale": "the better picture"}}))

    chat_server.responder = answer
    judge = ml_services.machine_annotator_create(name="vlm-overall", backend="openai_chat", model_ref="judge",
                                                 parameters={"base_url": chat_server.base_url, "max_retries": 0})
    job = ml_services.auto_job_launch(project=project, annotator=judge, kind="pairs", aspects=["overall"])
    for chunk in runner.auto_job_start(job_id=job.pk, send=False):
        runner.auto_job_run_chunk(chunk_id=chunk)
    job.refresh_from_db()
    assert job.status == "succeeded" and job.items_done == 24 and job.items_failed == 0, job.message
    return data, named


def run_filter(project, rules):
    run = curation_services.filter_run_create(project=project, name="default", rules=rules)
    return curation_services.filter_run_execute(run_id=run.pk)


def export(run, tmp_path, fmt):
    out = tmp_path / fmt
    created = dataset_export_create(project=run.project, format=fmt, container="parquet", destination=str(out),
                                    filter_run=run, options={"images": "reference"}, anywhere=True, enqueue=False)
    built = dataset_export_build(export_id=created.pk)
    assert built.status == "succeeded", built.message
    return pq.read_table(sorted(out.glob("data/default/*.parquet"))).to_pylist()


def test_a_default_filter_run_weighs_the_overall_judge_and_the_trl_margin_is_its_strength(judged, project, tmp_path):
    _, named = judged

    run = run_filter(project, {})

    assert run.status == "succeeded" and run.rules["aspect"] == "overall"
    (judge,) = run.summary["machine_judges"]
    assert judge["judge"] == "vlm-overall" and judge["judgments"] == 24 and judge["swap_agreement"] == 1.0
    assert not judge["position_biased"] and judge["strength_left_out"] == "" and judge["human_pairs"] >= 8
    decided = {v.comparison_id: v for v in UnitVerdict.objects.filter(run=run, consensus__in=["a", "b"])}
    assert run.summary["strength"]["scored"] == len(decided) >= 8
    for comparison_id, verdict in decided.items():  # one judge's verdict: +1 with the consensus, -1 against
        assert verdict.strength == (1.0 if named[comparison_id] == verdict.consensus else -1.0)

    rows = export(run, tmp_path, "trl")

    kept = {frozenset((v.comparison.image_a.sha256, v.comparison.image_b.sha256)): v.strength
            for v in UnitVerdict.objects.filter(run=run, keep=True, consensus__in=["a", "b"])
            .select_related("comparison__image_a", "comparison__image_b")}
    assert len(rows) == len(kept) and {row["aspect"] for row in rows} == {"overall"}
    for row in rows:
        assert row["margin"] == kept[frozenset((row["chosen_uid"], row["rejected_uid"]))]
    assert -1.0 in {row["margin"] for row in rows}  # no consensus confidence gives -1: the judge's verdict does


def test_units_the_overall_judge_contradicts_can_be_left_out_of_the_pickapic_export(judged, project, tmp_path):
    data, _ = judged

    run = run_filter(project, {"drop_likely_wrong": True})

    contradicted = {c.pk for i, c in enumerate(data.comparisons) if i in CONTRADICTED}
    dropped = UnitVerdict.objects.filter(run=run, comparison_id__in=contradicted, consensus__in=["a", "b"])
    assert dropped.exists() and not dropped.filter(keep=True).exists()
    assert all(any(r.startswith("likely wrong") for r in v.reasons) for v in dropped)
    rows = export(run, tmp_path, "pickapic")
    assert rows and not {row["ranking_id"] for row in rows} & contradicted
