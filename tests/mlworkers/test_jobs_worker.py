"""Auto-annotation jobs end to end through a real Celery worker process."""
import json
import threading
from collections import defaultdict

import pytest

from annotation.models import AspectScore, PreferenceJudgment
from mlworkers import services
from tests.conftest import wait_for
from tests.mlworkers.chat_server import Reply, alternating_verdicts

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def finished_job(client, job_id):
    body = client.get(f"/api/v1/auto-jobs/{job_id}/").json()
    return body if body["status"] not in ("queued", "running", "cancelling") else None


def test_pair_job_asks_both_orders_records_failures_and_resumes_without_duplicates(
        celery_worker_process, imported, admin_client, chat_server):
    judge = services.machine_annotator_create(name="vlm", backend="openai_chat", model_ref="judge",
                                              parameters={"base_url": chat_server.base_url, "max_retries": 0})
    answers = {"prose": True}

    def respond(request):
        if answers["prose"] and len(chat_server.requests) == 3:
            return Reply.chat("I think the first one looks nicer, honestly.")
        return Reply.chat(json.dumps({"aesthetic": {"choice": "first", "rationale": "sharper"}}))

    chat_server.responder = respond
    launched = admin_client.post("/api/v1/projects/cats/auto-jobs/", {
        "machine_annotator": judge.pk, "kind": "pairs", "aspects": ["aesthetic"], "orders": "both"}, format="json")
    job = wait_for(lambda: finished_job(admin_client, launched.json()["id"]), what="the job to finish")
    failures = admin_client.get(f"/api/v1/auto-jobs/{job['id']}/failures/").json()["results"]

    assert job["status"] == "succeeded", job
    assert job["progress"]["total"] == 12 and job["progress"]["done"] == 11 and job["progress"]["failed"] == 1
    assert len(failures) == 1 and "not JSON" in failures[0]["error"]
    assert failures[0]["raw"] == "I think the first one looks nicer, honestly."
    rows = list(PreferenceJudgment.objects.filter(source="machine").values_list("comparison_id", "left_image_id",
                                                                                 "choice"))
    assert len(rows) == 11
    for comparison_id, left, choice in rows:  # "first" always: canonical a when a was shown first
        images = PreferenceJudgment.objects.filter(comparison_id=comparison_id).first().comparison
        assert choice == ("a" if left == images.image_a_id else "b")

    answers["prose"] = False
    asked_before = len(chat_server.requests)
    admin_client.post(f"/api/v1/auto-jobs/{job['id']}/resume/")
    resumed = wait_for(lambda: finished_job(admin_client, job["id"]), what="the resumed job to finish")

    assert resumed["status"] == "succeeded"
    assert len(chat_server.requests) - asked_before == 1  # only the failed item was asked again
    assert PreferenceJudgment.objects.filter(source="machine").count() == 12


def test_a_job_whose_endpoint_is_down_fails_with_the_reason(celery_worker_process, imported, admin_client):
    judge = services.machine_annotator_create(name="down", backend="openai_chat", model_ref="judge",
                                              parameters={"base_url": "http://127.0.0.1:9/v1", "max_retries": 0,
                                                          "timeout_s": 1})
    launched = admin_client.post("/api/v1/projects/cats/auto-jobs/", {
        "machine_annotator": judge.pk, "kind": "score", "aspects": ["aesthetic"]}, format="json")
    job = wait_for(lambda: finished_job(admin_client, launched.json()["id"]), what="the job to fail")

    assert job["status"] == "failed" and job["message"]
    assert AspectScore.objects.count() == 0


def launch_and_wait(client, **payload):
    launched = client.post("/api/v1/projects/cats/auto-jobs/", payload, format="json")
    assert launched.status_code == 202, launched.content
    return wait_for(lambda: finished_job(client, launched.json()["id"]), timeout=180, what="the job to finish")


def test_clipscore_job_scores_every_image_with_a_tiny_open_clip_model(celery_worker_process, imported, admin_client,
                                                                      tmp_path):
    from tests.mlworkers.tiny_models import make_tiny_open_clip

    model_dir = make_tiny_open_clip(tmp_path / "tiny-clip")
    judge = services.machine_annotator_create(name="clip", backend="clipscore", model_ref=str(model_dir),
                                              parameters={"num_workers": 0})

    job = launch_and_wait(admin_client, machine_annotator=judge.pk, kind="score")

    assert job["status"] == "succeeded", job
    scores = list(AspectScore.objects.filter(source="machine", machine_version=judge.version))
    assert len(scores) == 4 and {s.aspect for s in scores} == {"prompt_following"}
    assert all(0.0 <= s.value <= 2.5 for s in scores)


def test_mllm_job_stores_scores_and_both_pair_orders_from_a_tiny_qwen2_5_vl(celery_worker_process, imported,
                                                                          admin_client, judge_dirs):
    scorer = services.machine_annotator_create(name="vlm-scorer", backend="mllm_transformers",
                                               model_ref=str(judge_dirs.scorer))
    pair_judge = services.machine_annotator_create(name="vlm-pairs", backend="mllm_transformers",
                                                   model_ref=str(judge_dirs.pair_judge))

    scored = launch_and_wait(admin_client, machine_annotator=scorer.pk, kind="score",
                             aspects=["aesthetic", "fidelity"])
    judged = launch_and_wait(admin_client, machine_annotator=pair_judge.pk, kind="pairs",
                             aspects=["aesthetic", "fidelity"], orders="both")

    assert scored["status"] == judged["status"] == "succeeded"
    values = {(s.aspect, s.value, s.rationale) for s in AspectScore.objects.filter(machine_annotator=scorer)}
    assert values == {("aesthetic", 4.0, "balanced colours"), ("fidelity", 2.0, "melted hands")}
    verdicts = list(PreferenceJudgment.objects.filter(machine_annotator=pair_judge, aspect="aesthetic"))
    assert len(verdicts) == 12  # 6 pairs, both orders
    for verdict in verdicts:  # "second" each time: the canonical side flips with the order
        comparison = verdict.comparison
        assert verdict.choice == ("b" if verdict.left_image_id == comparison.image_a_id else "a")


def test_a_pair_job_with_three_samples_stores_three_differing_verdicts_per_key_and_resumes_without_duplicates(
        celery_worker_process, imported, admin_client, chat_server):
    judge = services.machine_annotator_create(name="sampler", backend="openai_chat", model_ref="judge",
                                              parameters={"base_url": chat_server.base_url, "max_retries": 0,
                                                          "temperature": 0.7})
    broken = threading.Lock()
    failures_left = [1]

    def respond(request):  # the second answer to some question is prose, once
        with broken:
            if request.repeat == 1 and failures_left[0]:
                failures_left[0] -= 1
                return Reply.chat("Hard to say; maybe the first?")
        return alternating_verdicts(request)

    chat_server.responder = respond
    job = launch_and_wait(admin_client, machine_annotator=judge.pk, kind="pairs", aspects=["aesthetic"],
                          orders="both", samples=3)
    failures = admin_client.get(f"/api/v1/auto-jobs/{job['id']}/failures/").json()["results"]

    assert job["status"] == "succeeded" and job["samples"] == 3, job
    assert job["progress"] == {**job["progress"], "total": 36, "done": 35, "failed": 1}
    assert len(failures) == 1 and failures[0]["sample"] in (0, 1, 2) and "not JSON" in failures[0]["error"]
    assert len(chat_server.requests) == 36 and all(r.body["temperature"] == 0.7 for r in chat_server.requests)

    admin_client.post(f"/api/v1/auto-jobs/{job['id']}/resume/")
    resumed = wait_for(lambda: finished_job(admin_client, job["id"]), what="the resumed job to finish")
    admin_client.post(f"/api/v1/auto-jobs/{job['id']}/resume/")
    again = wait_for(lambda: finished_job(admin_client, job["id"]), what="the second resume to finish")

    assert resumed["status"] == again["status"] == "succeeded" and again["message"] == "nothing left to annotate"
    assert len(chat_server.requests) == 37  # only the failed sample was asked again, then nothing
    rows = list(PreferenceJudgment.objects.filter(machine_annotator=judge).values_list(
        "comparison_id", "left_image_id", "aspect", "sample", "choice"))
    assert len(rows) == len({row[:4] for row in rows}) == 6 * 2 * 3
    samples, choices = defaultdict(set), defaultdict(set)
    for comparison_id, left, aspect, sample, choice in rows:
        samples[(comparison_id, left, aspect)].add(sample)
        choices[(comparison_id, left, aspect)].add(choice)
    assert len(samples) == 12 and all(s == {0, 1, 2} for s in samples.values())
    assert all(c == {"a", "b"} for c in choices.values())  # the samples are the judge's, not one answer copied
