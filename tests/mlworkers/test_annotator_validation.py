"""A machine annotator no job could run is refused when it is saved, by field and with the reason,
the same way through the service, the API and the Django admin; the backend is a choice."""
import json

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from annotation.models import MachineAnnotator
from mlworkers import services
from mlworkers.backends.base import backend_names
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

EXISTING = "<an existing folder>"  # replaced by the test's own folder

REFUSED = {
    "a local path that does not exist": (
        {"backend": "clipscore", "model_ref": "/no/such/model"}, "model_ref",
        "no such local path: /no/such/model (a model on the Hub is named hf://org/repo[@revision] or "
        "hf-hub:org/repo; one on S3 s3://bucket/key)"),
    "a local path too long for the filesystem": (
        {"backend": "clipscore", "model_ref": "m" * 300}, "model_ref", f"no such local path: {'m' * 300} "),
    "a malformed Hub id": (
        {"backend": "clipscore", "model_ref": "hf://just-an-org"}, "model_ref",
        "malformed Hub reference 'hf://just-an-org': expected hf://org/repo[@revision][/path/in/repo]"),
    "a Hub path that leaves the repo": (
        {"backend": "pickscore", "model_ref": "hf://org/repo@main/../secrets"}, "model_ref",
        "malformed Hub reference 'hf://org/repo@main/../secrets': '../secrets' is not a path in a repo"),
    "open_clip's name form on a transformers backend": (
        {"backend": "mllm_transformers", "model_ref": "hf-hub:org/repo"}, "model_ref",
        "'hf-hub:org/repo': hf-hub: names are open_clip's; write hf://org/repo"),
    "a malformed S3 key": (
        {"backend": "clipscore", "model_ref": "s3://bucket-only"}, "model_ref",
        "malformed S3 reference 's3://bucket-only': expected s3://bucket/key or s3://bucket/prefix/"),
    "a backend that does not exist": (
        {"backend": "gpt-magic"}, "backend", "unknown backend 'gpt-magic'; known: "),
    "a parameter the backend does not take": (
        {"backend": "clipscore", "parameters": {"temprature": 0.7}}, "parameters",
        "clipscore does not take the parameter temprature; it takes: aspect, batch_size, num_workers, model_name"),
    "a value the backend refuses": (
        {"backend": "openai_chat", "model_ref": "judge", "parameters": {"base_url": "ftp://judge.example/v1"}},
        "parameters", "openai_chat: parameter base_url must be an http(s) URL such as http://127.0.0.1:8000/v1"),
    "a parameter holding a NUL, which PostgreSQL cannot store": (
        {"backend": "openai_chat", "model_ref": "judge", "parameters": {"base_url": "http://127.0.0.1:8000/v1\x00"}},
        "parameters", "must not contain NUL characters or unpaired surrogates"),
    "a parameter the backend needs, missing": (
        {"backend": "laion_aesthetic"}, "parameters",
        "laion_aesthetic needs the parameter head_path: the aesthetic head's weights file"),
    "a weights parameter naming a file that does not exist": (
        {"backend": "laion_aesthetic", "parameters": {"head_path": "/no/such/head.pth"}}, "parameters",
        "head_path: no such local path: /no/such/head.pth"),
}


def annotator_fields(tmp_path, overrides) -> dict:
    fields = {"name": "judge", "backend": "clipscore", "model_ref": EXISTING, "parameters": {}, **overrides}
    if fields["model_ref"] == EXISTING:
        fields["model_ref"] = str(tmp_path)
    return fields


@pytest.fixture
def admin_browser(platform_admin) -> Client:
    client = Client()
    client.force_login(platform_admin)
    return client


@pytest.mark.parametrize("case", REFUSED)
def test_the_service_refuses_what_no_job_could_run_naming_the_field(case, tmp_path):
    overrides, field, message = REFUSED[case]

    with pytest.raises(ValidationError) as refused:
        services.machine_annotator_create(**annotator_fields(tmp_path, overrides))

    assert list(refused.value.message_dict) == [field] and refused.value.message_dict[field][0].startswith(message)
    assert not MachineAnnotator.objects.exists()


@pytest.mark.parametrize("case", REFUSED)
def test_the_api_refuses_it_with_a_400_naming_the_field(case, tmp_path, platform_admin):
    overrides, field, message = REFUSED[case]

    response = client_for(platform_admin).post("/api/v1/machine-annotators/", annotator_fields(tmp_path, overrides),
                                               format="json")

    assert response.status_code == 400, response.content
    body = response.json()
    assert list(body["extra"]["fields"]) == [field]
    expected = '"gpt-magic" is not a valid choice.' if field == "backend" else message  # a choice field's words
    assert expected in body["message"]
    assert not MachineAnnotator.objects.exists()


@pytest.mark.parametrize("case", REFUSED)
def test_the_admin_add_form_refuses_it_on_the_field(case, tmp_path, admin_browser):
    overrides, field, message = REFUSED[case]
    fields = annotator_fields(tmp_path, overrides)

    response = admin_browser.post("/admin/annotation/machineannotator/add/", {
        **fields, "parameters": json.dumps(fields["parameters"]), "prompt_template": "", "is_active": "on"})

    assert response.status_code == 200  # the form again, with its errors
    errors = response.context["adminform"].form.errors
    assert list(errors) == [field]
    expected = ("Select a valid choice. gpt-magic is not one of the available choices." if field == "backend"
                else message)
    assert errors[field][0].startswith(expected)
    assert not MachineAnnotator.objects.exists()


def test_an_update_is_checked_as_a_creation_is(tmp_path, platform_admin, admin_browser):
    judge = services.machine_annotator_create(name="clip", backend="clipscore", model_ref=str(tmp_path))
    version = judge.version

    api = client_for(platform_admin).patch(f"/api/v1/machine-annotators/{judge.pk}/",
                                           {"parameters": {"batch_size": "many"}}, format="json")
    admin = admin_browser.post(f"/admin/annotation/machineannotator/{judge.pk}/change/", {
        "name": "clip", "backend": "clipscore", "model_ref": str(tmp_path / "gone"), "parameters": "{}",
        "prompt_template": "", "is_active": "on"})

    assert api.status_code == 400 and "parameter batch_size must be an integer, not 'many'" in api.json()["message"]
    assert list(admin.context["adminform"].form.errors) == ["model_ref"]
    judge.refresh_from_db()
    assert (judge.model_ref, judge.parameters, judge.version) == (str(tmp_path), {}, version)


def test_the_admin_offers_the_registered_backends_as_a_choice(admin_browser):
    form = admin_browser.get("/admin/annotation/machineannotator/add/").context["adminform"].form

    assert [value for value, _ in form.fields["backend"].choices] == backend_names()


def test_the_admin_saves_a_valid_annotator_through_the_service_with_its_hub_commit(hub_server, admin_browser,
                                                                                  platform_admin, tmp_path):
    sha = hub_server.add_commit("org/clip", {"open_clip_config.json": b"{}", "open_clip_model.safetensors": b"w"})

    added = admin_browser.post("/admin/annotation/machineannotator/add/", {
        "name": "clip", "backend": "clipscore", "model_ref": "hf-hub:org/clip", "parameters": '{"batch_size": 8}',
        "prompt_template": "", "is_active": "on"})
    judge = MachineAnnotator.objects.get(name="clip")
    changed = admin_browser.post(f"/admin/annotation/machineannotator/{judge.pk}/change/", {
        "name": "clip", "backend": "clipscore", "model_ref": "hf-hub:org/clip", "parameters": '{"batch_size": 16}',
        "prompt_template": "", "is_active": "on"})
    changed_judge = MachineAnnotator.objects.get(pk=judge.pk)

    assert added.status_code == changed.status_code == 302
    assert judge.model_commits == {"hf-hub:org/clip": sha} and judge.created_by == platform_admin
    assert judge.version == services.machine_annotator_version(
        backend="clipscore", model_ref="hf-hub:org/clip", parameters={"batch_size": 8}, prompt_template="",
        model_commits={"hf-hub:org/clip": sha})
    assert changed_judge.parameters == {"batch_size": 16} and changed_judge.model_commits == judge.model_commits
    assert changed_judge.version != judge.version
