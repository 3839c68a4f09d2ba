"""The catalogue of known text-to-image judges: every entry is well formed, and an annotator made
from it scores with the formula the entry names. The loopback Hub (hub_server.py) serves tiny
models of each entry's architecture family under the entry's own repo ids and file names, so the
annotator keeps the entry's references; only open_clip's architecture name is swapped for a tiny
one (ViT-L/14 and ViT-H/14 are too big for a test)."""
import json
import re

import pytest
from django.test import Client

from annotation.models import MachineAnnotator
from mlworkers import catalogue, hub, services
from mlworkers.backends.base import ImageRef, ScoreRequest, backend_class
from mlworkers.pipeline import decode_rgb
from mlworkers.verdicts import score_prompt
from tests.conftest import client_for
from tests.mlworkers.chat_server import Reply
from tests.mlworkers.test_clip_backends import two_prompts, webp_preview
from tests.mlworkers.test_mllm_backend import ASPECTS as MLLM_ASPECTS
from tests.mlworkers.test_mllm_backend import SCORE_ANSWER, Storage
from tests.mlworkers.test_openai_compat import ASPECTS as CHAT_ASPECTS
from tests.mlworkers.test_openai_compat import RED_REF, STORE, scores_json
from tests.mlworkers.tiny_models import (make_tiny_aesthetic_head, make_tiny_open_clip, make_tiny_pickscore,
                                         tiny_open_clip_config)

PREVIEWS = {f"previews/{i:02d}.webp": webp_preview(i) for i in range(7)}
TINY_ARCH = "tiny-catalogue-vit"  # stands in for ViT-L-14-quickgelu and ViT-H-14
SCORERS = ["clipscore_vit_l14", "laion_aesthetic_v2", "hpsv2_1", "pickscore_v1"]
SERVED = ["openai_chat_vllm", "openai_chat_ollama", "openai_chat_llamacpp"]


@pytest.fixture(autouse=True)
def fresh_backends(monkeypatch):
    monkeypatch.setattr(services, "_BACKENDS", {})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny weights of each family, as files: an open_clip checkpoint of TINY_ARCH (registered with
    open_clip as a built-in architecture is), a LAION head for its 32-wide embedding, a PickScore
    folder (a transformers CLIPModel with its processor)."""
    import open_clip

    root = tmp_path_factory.mktemp("catalogue-models")
    config = root / f"{TINY_ARCH}.json"
    config.write_text(json.dumps({**tiny_open_clip_config(), "quick_gelu": True}))
    open_clip.add_model_config(config)
    clip = make_tiny_open_clip(root / "clip", checkpoint="open_clip_pytorch_model.bin")
    (clip / "open_clip_config.json").unlink()  # the file alone, as the entries name it
    return {"clip_checkpoint": clip / "open_clip_pytorch_model.bin",
            "head": make_tiny_aesthetic_head(root / "head.pth", in_dim=32),
            "pickscore": make_tiny_pickscore(root / "pickscore")}


def serve_entry(hub_server, entry, tiny) -> dict[str, str]:
    """Commit tiny stand-ins of `entry`'s weights to the loopback Hub, under its repos and files;
    returns the commit of each of its references."""
    def stand_in(hub_file: catalogue.HubFile):
        if hub_file.file.endswith((".bin", ".pt")):
            return {hub_file.file: tiny["clip_checkpoint"].read_bytes()}
        if hub_file.file.endswith(".pth"):
            return {hub_file.file: tiny["head"].read_bytes()}
        return tiny["pickscore"]  # a transformers folder: the model, or the processor saved with it

    commits = {}
    for hub_file in [entry.model, *entry.files.values()]:
        commits[hub_file.reference] = hub_server.add_commit(hub_file.repo_id, stand_in(hub_file))
    return commits


def tiny_overrides(entry) -> dict:
    return {"num_workers": 0, **({"model_name": TINY_ARCH} if "model_name" in entry.parameters else {})}


def built(annotator, read_bytes):
    backend = services.backend_for(annotator)
    backend.read_bytes = read_bytes
    return backend


# --- what the formulas should give, computed here from the tiny models directly ---------------------

def open_clip_embeddings(tiny, request):
    """L2-normalised image embeddings of `request`'s previews and its prompt's text embedding."""
    import open_clip
    import torch

    model, _, preprocess = open_clip.create_model_and_transforms(TINY_ARCH, pretrained=str(tiny["clip_checkpoint"]))
    model.eval()
    with torch.inference_mode():
        pixels = torch.stack([preprocess(decode_rgb(PREVIEWS[i.preview_key])) for i in request.images])
        images = torch.nn.functional.normalize(model.encode_image(pixels).float(), dim=-1)
        text = torch.nn.functional.normalize(
            model.encode_text(open_clip.get_tokenizer(TINY_ARCH)([request.prompt])).float(), dim=-1)
    return images, text


def expected_clipscore(tiny, request):
    images, text = open_clip_embeddings(tiny, request)
    return (2.5 * (images * text).sum(-1).clamp(min=0)).tolist()


def expected_aesthetic(tiny, request):
    import torch

    from mlworkers.backends.clip_models import aesthetic_head

    images, _ = open_clip_embeddings(tiny, request)
    head = aesthetic_head(32)
    head.load_state_dict(torch.load(tiny["head"], weights_only=True))
    with torch.inference_mode():
        return head.eval()(images).squeeze(-1).tolist()


def expected_hpsv2(tiny, request):
    images, text = open_clip_embeddings(tiny, request)
    return (100 * (images * text).sum(-1)).tolist()


def expected_pickscore(tiny, request):
    import torch
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(str(tiny["pickscore"])).eval()
    processor = CLIPProcessor.from_pretrained(str(tiny["pickscore"]))
    inputs = processor(text=[request.prompt], images=[decode_rgb(PREVIEWS[i.preview_key]) for i in request.images],
                       return_tensors="pt", padding=True)
    with torch.inference_mode():
        output = model(**inputs)
        images = torch.nn.functional.normalize(output.image_embeds.float(), dim=-1)
        text = torch.nn.functional.normalize(output.text_embeds.float(), dim=-1)
        return (model.logit_scale.exp() * (images * text).sum(-1)).tolist()


FORMULAS = {"clipscore_vit_l14": expected_clipscore, "laion_aesthetic_v2": expected_aesthetic,
            "hpsv2_1": expected_hpsv2, "pickscore_v1": expected_pickscore}


# --- the entries ---------------------------------------------------------------------------------------

def test_the_catalogue_offers_the_known_judges_and_a_test_formula_for_each_scorer():
    assert set(catalogue.ENTRIES) == {*SCORERS, "qwen2_5_vl_7b", *SERVED}
    assert set(FORMULAS) == {key for key, e in catalogue.ENTRIES.items() if backend_class(e.backend).weights
                             and e.backend != "mllm_transformers"}


@pytest.mark.parametrize("key", list(catalogue.ENTRIES))
def test_every_entry_names_a_backend_that_takes_its_parameters_and_well_formed_hub_files(key):
    entry = catalogue.ENTRIES[key]
    cls = backend_class(entry.backend)
    cls.check_parameters(entry.annotator_parameters())

    assert entry.licence and entry.input_size and entry.formula
    if cls.weights:
        refs = [entry.model, *entry.files.values()]
        assert hub.parse(entry.model_ref, files=cls.weights).repo_id == entry.model.repo_id
        for hub_file in refs:
            assert hub_file.revision is None or re.fullmatch(r"[0-9a-f]{40}", hub_file.revision)
            assert hub_file.checksum is None or re.fullmatch(r"[0-9a-f]{64}", hub_file.checksum)
    else:
        assert entry.model is None and entry.served_model and entry.parameters["base_url"].startswith("http://")


def test_every_preset_is_a_score_template_the_mllm_judges_can_fill():
    for preset in catalogue.PRESETS.values():
        text = score_prompt(preset.template, "a red cube", MLLM_ASPECTS, 5)
        assert "a red cube" in text and "1 (worst) to 5 (best)" in text and '"fidelity": {"score": 5' in text
    assert set(catalogue.PRESETS["visionprefer"].aspects) == {"prompt_following", "aesthetic", "fidelity",
                                                               "harmlessness"}


# --- each entry's formula ---------------------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("key", SCORERS)
def test_an_annotator_from_a_scorer_entry_scores_with_the_entrys_formula(key, hub_server, tiny):
    entry = catalogue.ENTRIES[key]
    commits = serve_entry(hub_server, entry, tiny)

    judge = catalogue.machine_annotator_create_from_catalogue(key=key, parameters=tiny_overrides(entry))
    results = built(judge, PREVIEWS.__getitem__).score(two_prompts())

    assert judge.name == entry.label and judge.backend == entry.backend and judge.model_ref == entry.model_ref
    assert judge.model_commits == commits  # every reference of the entry resolved through the Hub
    for request in two_prompts():
        got = [r.value for r in results if r.image_id in {i.image_id for i in request.images}]
        assert got == pytest.approx(FORMULAS[key](tiny, request), abs=1e-4)
    assert {r.aspect for r in results} == {backend_class(entry.backend).scored_aspect({})}


@pytest.mark.django_db
def test_an_annotator_from_the_qwen_entry_reads_the_judges_json_scores_with_a_visionprefer_preset(
        hub_server, judge_dirs):
    entry = catalogue.ENTRIES["qwen2_5_vl_7b"]
    sha = hub_server.add_commit(entry.model.repo_id, judge_dirs.scorer)  # wired to answer SCORE_ANSWER

    judge = catalogue.machine_annotator_create_from_catalogue(key="qwen2_5_vl_7b", preset="visionprefer",
                                                              parameters={"image_source": "preview"})
    backend = built(judge, Storage().files.__getitem__)
    results = backend.score([ScoreRequest(prompt="a green square", images=[ImageRef(1, "preview/a.png", "a.png")],
                                          aspects=MLLM_ASPECTS, scale=5)])

    assert judge.model_commits == {"hf://Qwen/Qwen2.5-VL-7B-Instruct": sha}
    assert judge.prompt_template == catalogue.PRESETS["visionprefer"].template
    answer = json.loads(SCORE_ANSWER)
    assert [(r.aspect, r.value, r.rationale) for r in results] == [
        (key, answer[key]["score"], answer[key]["rationale"]) for key in ("aesthetic", "fidelity")]


@pytest.mark.django_db
@pytest.mark.parametrize("key", SERVED)
def test_an_annotator_from_a_served_entry_asks_its_server_with_the_preset_and_stores_the_answered_scores(
        key, chat_server):
    chat_server.reply(Reply.chat(scores_json(aesthetic=4, fidelity=2)))
    preset = catalogue.PRESETS["visionprefer_aesthetic"]

    judge = catalogue.machine_annotator_create_from_catalogue(
        key=key, name="served", preset=preset.key, parameters={"base_url": chat_server.base_url})
    results = built(judge, STORE.__getitem__).score(
        [ScoreRequest(prompt="a red square", images=[RED_REF], aspects=CHAT_ASPECTS, scale=5)])

    assert judge.model_ref == catalogue.ENTRIES[key].served_model and judge.model_commits == {}
    assert chat_server.requests[0].text == score_prompt(preset.template, "a red square", CHAT_ASPECTS, 5)
    assert chat_server.requests[0].body["model"] == judge.model_ref
    assert [(r.aspect, r.value) for r in results] == [("aesthetic", 4), ("fidelity", 2)]


# --- creating from the catalogue: the service's checks apply -----------------------------------------------

@pytest.mark.django_db
def test_overrides_are_checked_as_any_annotator_is():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as unknown:
        catalogue.machine_annotator_create_from_catalogue(key="imagereward")
    with pytest.raises(ValidationError) as bad_parameter:
        catalogue.machine_annotator_create_from_catalogue(key="pickscore_v1", parameters={"temprature": 1})
    with pytest.raises(ValidationError) as not_an_object:
        catalogue.machine_annotator_create_from_catalogue(key="pickscore_v1", parameters=["batch_size"])
    with pytest.raises(ValidationError) as preset_on_scorer:
        catalogue.machine_annotator_create_from_catalogue(key="pickscore_v1", preset="visionprefer")

    assert unknown.value.message_dict["catalogue"][0].startswith("no catalogue entry 'imagereward'; known: ")
    assert "pickscore does not take the parameter temprature" in bad_parameter.value.message_dict["parameters"][0]
    assert not_an_object.value.message_dict == {"parameters": ["must be a JSON object"]}
    assert preset_on_scorer.value.message_dict == {"preset": ["prompt presets are for MLLM judges, not pickscore"]}
    assert not MachineAnnotator.objects.exists()


@pytest.mark.django_db
def test_the_api_lists_the_catalogue_and_creates_from_an_entry_with_its_hub_commits(hub_server, tiny, platform_admin,
                                                                                   researcher):
    entry = catalogue.ENTRIES["pickscore_v1"]
    commits = serve_entry(hub_server, entry, tiny)
    api = client_for(platform_admin)

    listed = api.get("/api/v1/machine-annotators/catalogue/")
    created = api.post("/api/v1/machine-annotators/catalogue/", {"catalogue": "pickscore_v1", "name": "pick"},
                       format="json")
    refused = api.post("/api/v1/machine-annotators/catalogue/", {"catalogue": "nope"}, format="json")
    forbidden = client_for(researcher).get("/api/v1/machine-annotators/catalogue/")

    assert listed.status_code == 200, listed.content
    rows = {row["key"]: row for row in listed.json()["entries"]}
    assert rows["pickscore_v1"]["model"] == {"repo_id": "yuvalkirstain/PickScore_v1", "file": "", "revision": None,
                                             "checksum": None, "reference": "hf://yuvalkirstain/PickScore_v1"}
    assert rows["pickscore_v1"]["formula"] == "logit_scale.exp() * cos(image, prompt)"
    assert {p["key"] for p in listed.json()["presets"]} == set(catalogue.PRESETS)
    assert created.status_code == 201, created.content
    assert created.json()["model_commits"] == commits and created.json()["backend"] == "pickscore"
    assert created.json()["parameters"] == entry.annotator_parameters()
    assert refused.status_code == 400 and "catalogue" in refused.json()["extra"]["fields"]
    assert forbidden.status_code == 403


@pytest.mark.django_db
def test_the_admin_add_form_offers_the_catalogue_and_creates_from_an_entry(hub_server, tiny, platform_admin):
    entry = catalogue.ENTRIES["laion_aesthetic_v2"]
    commits = serve_entry(hub_server, entry, tiny)
    browser = Client()
    browser.force_login(platform_admin)

    form = browser.get("/admin/annotation/machineannotator/add/").context["adminform"].form
    added = browser.post("/admin/annotation/machineannotator/add/", {
        "catalogue": "laion_aesthetic_v2", "preset": "", "name": "", "backend": "", "model_ref": "",
        "parameters": json.dumps({"batch_size": 8}), "prompt_template": "", "is_active": "on"})
    judge = MachineAnnotator.objects.get()

    assert [value for value, _ in form.fields["catalogue"].choices] == ["", *catalogue.ENTRIES]
    assert added.status_code == 302, added.context["adminform"].form.errors if added.context else added
    assert judge.name == entry.label and judge.backend == "laion_aesthetic" and judge.model_ref == entry.model_ref
    assert judge.parameters == {**entry.annotator_parameters(), "batch_size": 8}
    assert judge.model_commits == commits and judge.created_by == platform_admin


@pytest.mark.django_db
def test_the_admin_applies_a_preset_to_an_mllm_judge_and_refuses_it_on_a_scorer(chat_server, platform_admin,
                                                                                tmp_path):
    browser = Client()
    browser.force_login(platform_admin)
    form = {"catalogue": "", "prompt_template": "", "is_active": "on"}

    judge = browser.post("/admin/annotation/machineannotator/add/", {
        **form, "preset": "visionprefer_fidelity", "name": "served", "backend": "openai_chat", "model_ref": "judge",
        "parameters": json.dumps({"base_url": chat_server.base_url})})
    scorer = browser.post("/admin/annotation/machineannotator/add/", {
        **form, "preset": "visionprefer", "name": "clip", "backend": "clipscore", "model_ref": str(tmp_path),
        "parameters": "{}"})

    assert judge.status_code == 302
    assert MachineAnnotator.objects.get().prompt_template == catalogue.PRESETS["visionprefer_fidelity"].template
    assert scorer.context["adminform"].form.errors == {"preset": ["prompt presets are for MLLM judges, not clipscore"]}
