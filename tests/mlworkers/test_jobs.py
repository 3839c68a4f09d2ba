"""Machine annotators and auto-annotation jobs: versions, launching, planning, permissions."""
import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from annotation.services import membership_set
from mlworkers import runner, services
from mlworkers.models import AutoAnnotationChunk, AutoAnnotationJob
from tests.factories import UserFactory, prompts_with_all_pairs
from tests.mlworkers.chat_server import alternating_verdicts

pytestmark = pytest.mark.django_db
Job = AutoAnnotationJob


def chunk_items(chunk_ids) -> list[list[int]]:
    by_id = dict(AutoAnnotationChunk.objects.filter(pk__in=chunk_ids).values_list("pk", "item_ids"))
    return [by_id[pk] for pk in chunk_ids]


@pytest.fixture
def judge(db):
    return services.machine_annotator_create(name="judge", backend="openai_chat", model_ref="tiny-judge",
                                             parameters={"base_url": "http://127.0.0.1:9/v1"})


@pytest.fixture
def filled_project(project):
    """`cats`: 5 prompts with 3 images each, every pair compared (15 images, 15 pairs)."""
    prompts_with_all_pairs(project, prompts=5, images_per_prompt=3)
    return project


def test_version_changes_with_anything_that_changes_answers(judge):
    first = judge.version
    seen = {first}
    for change in [{"model_ref": "other"}, {"parameters": {"base_url": "http://127.0.0.1:9/v1", "temperature": 0.7}},
                   {"prompt_template": "Rate {prompt}"}]:
        judge = services.machine_annotator_update(annotator=judge, **change)
        assert judge.version not in seen
        seen.add(judge.version)
    assert services.machine_annotator_update(annotator=judge, is_active=True).version == judge.version


def test_unknown_backend_is_refused_by_name(db):
    with pytest.raises(ValidationError, match="unknown backend 'gpt-magic'"):
        services.machine_annotator_create(name="x", backend="gpt-magic", model_ref="m")


def test_launch_refuses_a_project_without_images(project, judge):
    with pytest.raises(ValidationError, match="has no images"):
        services.auto_job_launch(project=project, annotator=judge, kind="score")


def test_launch_refuses_unknown_aspects(filled_project, judge):
    with pytest.raises(ValidationError, match="not aspects of this project: taste"):
        services.auto_job_launch(project=filled_project, annotator=judge, kind="score", aspects=["taste"])


def test_launching_the_same_job_twice_is_refused(filled_project, judge):
    first = services.auto_job_launch(project=filled_project, annotator=judge, kind="pairs")

    with pytest.raises(ValidationError, match=f"job {first.pk} with this annotator is already queued"):
        services.auto_job_launch(project=filled_project, annotator=judge, kind="pairs")
    assert Job.objects.count() == 1


def test_planning_packs_whole_prompts_and_counts_both_orders(filled_project, judge, settings):
    settings.AUTO_JOB_CHUNK_ITEMS = 7
    job = services.auto_job_launch(project=filled_project, annotator=judge, kind="pairs", orders="both")

    chunks = runner.auto_job_start(job_id=job.pk, send=False)

    job.refresh_from_db()
    assert job.status == "running" and job.items_total == 30 and job.chunks_total == len(chunks)
    assert [len(items) for items in chunk_items(chunks)] == [6, 6, 3]  # 3 pairs a prompt, never split
    assert runner.auto_job_start(job_id=job.pk, send=False) == []  # planning twice plans nothing


def test_sample_scope_takes_n_items(filled_project, judge):
    job = services.auto_job_launch(project=filled_project, annotator=judge, kind="score", scope="sample",
                                   sample_size=4)

    chunks = runner.auto_job_start(job_id=job.pk, send=False)

    assert sum(len(items) for items in chunk_items(chunks)) == 4


def test_cancel_stops_a_job_and_its_chunks_do_nothing(filled_project, judge):
    job = services.auto_job_launch(project=filled_project, annotator=judge, kind="score")
    chunks = runner.auto_job_start(job_id=job.pk, send=False)

    services.auto_job_cancel(job=job)
    runner.auto_job_run_chunk(chunk_id=chunks[0])

    job.refresh_from_db()
    assert job.status == "cancelled" and job.items_done == 0 and job.chunks_done == 0


def test_a_job_whose_annotator_changed_fails_instead_of_mixing_versions(filled_project, judge):
    job = services.auto_job_launch(project=filled_project, annotator=judge, kind="score")
    chunks = runner.auto_job_start(job_id=job.pk, send=False)
    services.machine_annotator_update(annotator=judge, prompt_template="Rate {prompt} differently")

    runner.auto_job_run_chunk(chunk_id=chunks[0])

    job.refresh_from_db()
    assert job.status == "failed" and "changed since launch" in job.message


# --- API permissions ---------------------------------------------------------------------------

def test_only_platform_admins_manage_machine_annotators(researcher, platform_admin):
    payload = {"name": "clip", "backend": "openai_chat", "model_ref": "m", "parameters": {"base_url": "http://x/v1"}}
    researcher_client, admin_client = APIClient(), APIClient()
    researcher_client.force_login(researcher)
    admin_client.force_login(platform_admin)

    assert researcher_client.post("/api/v1/machine-annotators/", payload, format="json").status_code == 403
    created = admin_client.post("/api/v1/machine-annotators/", payload, format="json")
    assert created.status_code == 201 and len(created.json()["version"]) == 16


def test_only_project_admins_launch_jobs(filled_project, judge, researcher, platform_admin):
    payload = {"machine_annotator": judge.pk, "kind": "score", "aspects": ["aesthetic"]}
    researcher_client = APIClient()
    researcher_client.force_login(researcher)
    project_admin = UserFactory(username="pat")
    membership_set(project=filled_project, user=project_admin, role="admin")
    admin_client = APIClient()
    admin_client.force_login(project_admin)

    refused = researcher_client.post("/api/v1/projects/cats/auto-jobs/", payload, format="json")
    launched = admin_client.post("/api/v1/projects/cats/auto-jobs/", payload, format="json")

    assert refused.status_code == 403
    assert launched.status_code == 202 and launched.json()["status"] == "queued"
    detail = admin_client.get(f"/api/v1/auto-jobs/{launched.json()['id']}/").json()
    assert detail["progress"] == {"done": 0, "failed": 0, "total": 0, "rate_per_s": 0.0, "seconds_left": None}
    assert researcher_client.get(f"/api/v1/auto-jobs/{launched.json()['id']}/").status_code == 404


# --- k samples per pair ----------------------------------------------------------------------------

def sampling_judge(name="sampler", temperature=0.7, base_url="http://127.0.0.1:9/v1"):
    parameters = {"base_url": base_url, "max_retries": 0}
    if temperature is not None:
        parameters["temperature"] = temperature
    return services.machine_annotator_create(name=name, backend="openai_chat", model_ref="tiny-judge",
                                             parameters=parameters)


@pytest.mark.parametrize("backend, parameters, kind, samples, reason", [
    ("clipscore", {}, "score", 3, "backend clipscore gives the same answer every time"),
    ("openai_chat", {"temperature": 0.7}, "score", 3, "several samples are for pairs jobs"),
    ("openai_chat", {}, "pairs", 3, "at temperature 0 answers the same every time"),
    ("openai_chat", {"temperature": 0}, "pairs", 3, "at temperature 0 answers the same every time"),
    ("mllm_transformers", {}, "pairs", 3, "decodes greedily"),
    ("mllm_transformers", {"do_sample": False}, "pairs", 3, "decodes greedily"),
    ("openai_chat", {"temperature": 0.7}, "pairs", 17, "from 1 to 16"),
    ("openai_chat", {"temperature": 0.7}, "pairs", 0, "from 1 to 16"),
])
def test_launching_samples_a_judge_cannot_give_is_refused_naming_samples(filled_project, backend, parameters, kind,
                                                                         samples, reason, tmp_path):
    if backend == "openai_chat":
        parameters = {"base_url": "http://127.0.0.1:9/v1", **parameters}
    model_ref = "m" if backend == "openai_chat" else str(tmp_path)  # saving checks a local path exists
    annotator = services.machine_annotator_create(name="j", backend=backend, model_ref=model_ref,
                                                  parameters=parameters)

    with pytest.raises(ValidationError) as refused:
        services.auto_job_launch(project=filled_project, annotator=annotator, kind=kind, samples=samples)

    assert list(refused.value.message_dict) == ["samples"] and reason in refused.value.message_dict["samples"][0]
    assert not Job.objects.exists()


def test_the_api_refuses_samples_of_a_greedy_judge_naming_samples(filled_project):
    greedy = sampling_judge(temperature=None)
    project_admin = UserFactory(username="pat")
    membership_set(project=filled_project, user=project_admin, role="admin")
    client = APIClient()
    client.force_login(project_admin)

    refused = client.post("/api/v1/projects/cats/auto-jobs/", {"machine_annotator": greedy.pk, "kind": "pairs",
                                                               "samples": 3}, format="json")
    too_many = client.post("/api/v1/projects/cats/auto-jobs/", {"machine_annotator": greedy.pk, "kind": "pairs",
                                                                "samples": 40}, format="json")

    assert refused.status_code == 400 and list(refused.json()["extra"]["fields"]) == ["samples"]
    assert refused.json()["message"].startswith("Invalid input: samples: 3 samples would be 3 copies of one answer")
    assert too_many.status_code == 400 and "samples" in too_many.json()["extra"]["fields"]


def test_planning_counts_pairs_times_orders_times_samples_and_shrinks_chunks(filled_project, settings):
    settings.AUTO_JOB_CHUNK_ITEMS = 7
    job = services.auto_job_launch(project=filled_project, annotator=sampling_judge(), kind="pairs", samples=3)

    chunks = runner.auto_job_start(job_id=job.pk, send=False)

    job.refresh_from_db()
    assert job.samples == 3 and job.items_total == 15 * 2 * 3
    assert [len(items) for items in chunk_items(chunks)] == [3] * 5  # 7 // 3 = 2 pairs a chunk, but a prompt's 3 stay together


def test_a_rerun_asks_only_the_pair_order_sample_keys_not_stored_and_writes_nothing_twice(imported, chat_server):
    from annotation.models import Comparison, PreferenceJudgment

    chat_server.responder = alternating_verdicts
    judge = sampling_judge(base_url=chat_server.base_url)
    first, finished = Comparison.objects.order_by("id")[:2]
    stored = [(first, first.image_a, 0), (first, first.image_a, 2)]  # sample 1 of this order is missing
    stored += [(first, first.image_b, s) for s in range(3)] + [(finished, left, s) for left in
                                                               (finished.image_a, finished.image_b) for s in range(3)]
    PreferenceJudgment.objects.bulk_create([PreferenceJudgment(
        project=imported, source="machine", machine_annotator=judge, machine_version=judge.version, comparison=c,
        aspect="aesthetic", choice="tie", left_image=left, sample=s, rationale="stored before") for c, left, s in stored])
    job = services.auto_job_launch(project=imported, annotator=judge, kind="pairs", aspects=["aesthetic"], samples=3)

    for chunk in runner.auto_job_start(job_id=job.pk, send=False):
        runner.auto_job_run_chunk(chunk_id=chunk)

    job.refresh_from_db()  # the pair left finished is not asked, nor the 5 keys of `first` stored: not counted either
    assert job.status == "succeeded" and job.items_total == 5 * 2 * 3 - 5 and job.items_done == 25
    assert len(chat_server.requests) == 30 - 5
    rows = PreferenceJudgment.objects.filter(machine_annotator=judge)
    assert rows.count() == 6 * 2 * 3
    assert set(rows.filter(comparison=first, left_image=first.image_a).values_list("sample", flat=True)) == {0, 1, 2}
    assert rows.filter(rationale="stored before").count() == len(stored)
    for comparison in Comparison.objects.exclude(id__in=[first.id, finished.id]):  # the judge's samples differ
        assert set(rows.filter(comparison=comparison).values_list("choice", flat=True)) == {"a", "b"}

    services.auto_job_resume(job=job)
    assert runner.auto_job_start(job_id=job.pk, send=False) == []
    job.refresh_from_db()
    assert job.status == "succeeded" and job.message == "nothing left to annotate"
    assert rows.count() == 36 and len(chat_server.requests) == 25
