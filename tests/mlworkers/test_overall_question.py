"""Machine judges asked the project's pairwise question, stored as aspect "overall": launching
(service, API, page), and pairs jobs of both MLLM backends run in-process end to end."""
import json
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from annotation.models import OVERALL_ASPECT, PreferenceJudgment
from annotation.services import membership_set
from mlworkers import runner, services
from tests.factories import UserFactory, prompts_with_all_pairs
from tests.mlworkers.chat_server import Reply

pytestmark = pytest.mark.django_db

QUESTION = "Which image is better overall?"
WEIGHTS = str(Path(__file__).parent)  # a folder that exists, as saving checks; no job here reads it


@pytest.fixture
def filled_project(project):
    prompts_with_all_pairs(project, prompts=2, images_per_prompt=3)
    return project


@pytest.fixture
def project_admin_client(project):
    admin = UserFactory(username="pat")
    membership_set(project=project, user=admin, role="admin")
    client = APIClient()
    client.force_login(admin)
    return client


def machine(backend, name=None, **parameters):
    if backend == "openai_chat":
        parameters = {"base_url": "http://127.0.0.1:9/v1", **parameters}
    return services.machine_annotator_create(name=name or backend, backend=backend,
                                             model_ref="m" if backend == "openai_chat" else WEIGHTS,
                                             parameters=parameters)


def run_job(job):
    for chunk in runner.auto_job_start(job_id=job.pk, send=False):
        runner.auto_job_run_chunk(chunk_id=chunk)
    job.refresh_from_db()
    return job


def test_the_pairwise_question_is_the_one_the_workspace_asks(project, annotator, client):
    client.force_login(annotator)

    page = client.get("/work/cats/pairwise/").content.decode()

    assert project.overall_aspect == {**OVERALL_ASPECT, "question": QUESTION}
    assert f'id="ws-overall-label">{QUESTION}</span>' in page


def test_a_pairs_job_asks_the_projects_pairwise_question_and_stores_overall(imported, chat_server):
    chat_server.responder = lambda request: Reply.chat(json.dumps(
        {"overall": {"choice": "first", "rationale": "the better picture"}}))
    judge = services.machine_annotator_create(name="vlm", backend="openai_chat", model_ref="judge",
                                              parameters={"base_url": chat_server.base_url, "max_retries": 0})

    job = run_job(services.auto_job_launch(project=imported, annotator=judge, kind="pairs", aspects=["overall"]))

    assert job.status == "succeeded" and job.items_done == 12 and job.items_failed == 0
    asked = chat_server.requests[0]
    assert f"- overall: {QUESTION}" in asked.text and "aesthetic" not in asked.text
    assert asked.body["response_format"]["json_schema"]["schema"]["required"] == ["overall"]
    rows = PreferenceJudgment.objects.filter(source="machine", machine_annotator=judge)
    assert rows.count() == 12 and set(rows.values_list("aspect", flat=True)) == {"overall"}
    for row in rows.select_related("comparison"):  # "first" is whichever side was shown first
        assert row.choice == ("a" if row.left_image_id == row.comparison.image_a_id else "b")
        assert row.rationale == "the better picture"


def test_overall_may_be_asked_beside_the_projects_aspects_in_one_request(imported, chat_server):
    chat_server.responder = lambda request: Reply.chat(json.dumps(
        {"overall": {"choice": "second", "rationale": "r"}, "aesthetic": {"choice": "tie", "rationale": "r"}}))
    judge = services.machine_annotator_create(name="vlm", backend="openai_chat", model_ref="judge",
                                              parameters={"base_url": chat_server.base_url, "max_retries": 0})

    job = run_job(services.auto_job_launch(project=imported, annotator=judge, kind="pairs", orders="one",
                                           aspects=["aesthetic", "overall"]))

    assert job.status == "succeeded" and len(chat_server.requests) == 6
    rows = PreferenceJudgment.objects.filter(machine_annotator=judge)
    assert rows.count() == 12 and set(rows.values_list("aspect", "choice")) == {("aesthetic", "tie"), ("overall", "b")}


@pytest.mark.parametrize(("backend", "parameters"), [("pickscore", {}), ("hpsv2", {}),
                                                     ("clipscore", {"aspect": "overall"})])
def test_a_score_job_asks_overall_of_a_scorer_of_one_overall_value(filled_project, backend, parameters):
    job = services.auto_job_launch(project=filled_project, annotator=machine(backend, **parameters), kind="score",
                                   aspects=["overall"])

    assert job.aspects == ["overall"]


@pytest.mark.parametrize(("backend", "parameters"), [("openai_chat", {}), ("mllm_transformers", {}),
                                                     ("clipscore", {}), ("pickscore", {"aspect": "aesthetic"})])
def test_a_score_job_refuses_overall_where_the_backend_would_not_score_it(filled_project, backend, parameters):
    with pytest.raises(ValidationError) as refused:
        services.auto_job_launch(project=filled_project, annotator=machine(backend, **parameters), kind="score",
                                 aspects=["overall"])

    message = refused.value.message_dict["aspects"][0]
    assert f"'overall' is the pairwise question ({QUESTION!r})" in message
    assert "(hpsv2, pickscore, or a CLIP-family scorer" in message and f"not of {backend} ({backend}" in message


def test_a_pairs_job_still_defaults_to_the_projects_aspects(filled_project):
    job = services.auto_job_launch(project=filled_project, annotator=machine("openai_chat"), kind="pairs")

    assert job.aspects == filled_project.aspect_keys and "overall" not in job.aspects


def test_the_api_launches_an_overall_pairs_job_and_refuses_an_overall_mllm_score_job(filled_project,
                                                                                     project_admin_client):
    judge = machine("openai_chat")

    launched = project_admin_client.post("/api/v1/projects/cats/auto-jobs/", {
        "machine_annotator": judge.pk, "kind": "pairs", "aspects": ["overall"]}, format="json")
    refused = project_admin_client.post("/api/v1/projects/cats/auto-jobs/", {
        "machine_annotator": judge.pk, "kind": "score", "aspects": ["overall"]}, format="json")

    assert launched.status_code == 202 and launched.json()["aspects"] == ["overall"]
    assert refused.status_code == 400 and list(refused.json()["extra"]["fields"]) == ["aspects"]


def test_the_launch_form_offers_the_pairwise_question_unticked(filled_project, project_admin_client):
    scorer, judge = machine("pickscore"), machine("openai_chat")

    page = project_admin_client.get("/projects/cats/auto-jobs/").content.decode()

    overall = page[page.index('value="overall"') - 40:page.index('value="overall"') + 200]
    assert 'data-testid="launch-aspect-overall"' in overall and "checked" not in overall
    assert f'<q data-testid="launch-overall-question">{QUESTION}</q>' in page
    assert f'<option value="{scorer.pk}" data-scores-overall>' in page
    assert f'<option value="{judge.pk}">' in page


# --- the in-process MLLM judge ----------------------------------------------------------------------

OVERALL_ANSWER = '{"overall": {"choice": "second", "rationale": "one clear winner"}}'


@pytest.fixture(scope="session")
def overall_judge_dir(tmp_path_factory):
    """A tiny Qwen2.5-VL checkpoint wired to answer OVERALL_ANSWER (see test_mllm_backend.py)."""
    pytest.importorskip("transformers")
    from tests.mlworkers.test_mllm_backend import _tiny_model, _tiny_processor, _wire_to_answer

    processor = _tiny_processor(extra_answers=(OVERALL_ANSWER,))
    model = _tiny_model(processor.tokenizer)
    _wire_to_answer(model, processor.tokenizer, OVERALL_ANSWER)
    folder = tmp_path_factory.mktemp("overall_judge")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_an_in_process_mllm_pairs_job_answers_overall(imported, overall_judge_dir):
    judge = services.machine_annotator_create(name="tiny-vlm", backend="mllm_transformers",
                                              model_ref=str(overall_judge_dir), parameters={"batch_size": 4})

    job = run_job(services.auto_job_launch(project=imported, annotator=judge, kind="pairs", aspects=["overall"]))

    assert job.status == "succeeded" and job.items_done == 12, job.message
    rows = PreferenceJudgment.objects.filter(machine_annotator=judge).select_related("comparison")
    assert rows.count() == 12
    for row in rows:  # "second" is whichever side was shown second
        assert row.aspect == "overall" and row.rationale == "one clear winner"
        assert row.choice == ("b" if row.left_image_id == row.comparison.image_a_id else "a")
