"""Known text-to-image judges, offered when an admin creates a machine annotator (the Django admin,
`GET/POST /api/v1/machine-annotators/catalogue/`), and VisionPrefer-style prompt presets for the
MLLM judges.

An entry is plain data: the backend, the Hub files it loads (repo, file, revision, checksum), its
licence, input size and the formula it scores with, and the parameters that make the backend
load exactly that. `machine_annotator_create_from_catalogue` turns an entry into an annotator
through `services.machine_annotator_create`, so it is checked (and its Hub references resolved
to commits) as any other annotator is.

Revisions: no Hub could be reached where this catalogue was written, so no entry pins a commit
it could not check (`revision=None`): the reference is resolved to the branch's commit when the
annotator is first saved, and that commit is part of its version from then on (see
docs/model-hub.md). Checksums: only where the authors publish one for the very file loaded
(none do today; OpenAI's sha256 in its download URL is of its own ViT-L-14.pt, not of the Hub's
re-serialised copy), so every entry has None.

ImageReward (THUDM/ImageReward) is not in the catalogue: its weights (`ImageReward.pt`, a BLIP
ViT-L + BERT cross-encoder with an MLP head) load only through its own `image-reward` package
(last release 1.5, July 2023), whose BLIP text encoder imports `apply_chunking_to_forward`,
`find_pruneable_heads_and_indices` and `prune_linear_layer` from `transformers.modeling_utils`;
transformers 5 (which the `ml` extra installs) exports none of them there, and the package also
wants timm 0.6.x and fairscale. Supporting it means porting BLIP's encoder into this code base.
"""
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError

from annotation.models import MachineAnnotator
from mlworkers import services


@dataclass(frozen=True)
class HubFile:
    """Weights on the Hugging Face Hub: a repo, a file in it ("" for the files the backend picks
    from the whole repo), a commit sha or None (unpinned: resolved when the annotator is first
    saved), and the file's published sha256 or None."""

    repo_id: str
    file: str = ""
    revision: str | None = None
    checksum: str | None = None

    @property
    def reference(self) -> str:
        """As a machine annotator's model_ref takes it: `hf://org/repo[@revision][/file]`."""
        return (f"hf://{self.repo_id}" + (f"@{self.revision}" if self.revision else "")
                + (f"/{self.file}" if self.file else ""))


@dataclass(frozen=True)
class CatalogueEntry:
    key: str
    label: str  # also the annotator's default name
    backend: str
    licence: str
    input_size: str
    formula: str
    model: HubFile | None = None  # None: a judge served elsewhere (openai_chat); `served_model` names it
    served_model: str = ""
    files: dict[str, HubFile] = field(default_factory=dict)  # parameter name -> further weights (heads, processors)
    parameters: dict = field(default_factory=dict)
    prompt_template: str = ""
    notes: str = ""

    @property
    def model_ref(self) -> str:
        return self.model.reference if self.model else self.served_model

    def annotator_parameters(self) -> dict:
        return {**self.parameters, **{name: hub_file.reference for name, hub_file in self.files.items()}}


# --- VisionPrefer prompt presets ---------------------------------------------------------------------
# VisionPrefer (Wu et al., 2024) asks its MLLM judge about one aspect at a time, with a rubric per
# aspect. These templates follow that structure in our own words (the paper's prompts are not
# reproduced); they fill {prompt}, {scale}, {aspects} and {example} like mlworkers.verdicts' default
# score template, so they are templates for score jobs: VisionPrefer derives its pairs from the scores.

_SCORE_TAIL = ("Rate the image from 1 (worst) to {scale} (best) on each aspect below, with one short sentence "
               "of rationale each.\n{aspects}\nAnswer with JSON only, in this shape: {example}")
_RUBRICS = {
    "prompt_following": ("Prompt following: check every object, count, colour, attribute, spatial relation and "
                         "style the prompt asks for. Each one missing or wrong lowers the score; an image showing "
                         "all of them exactly earns the top score."),
    "aesthetic": ("Aesthetic: judge composition, colour harmony, lighting, detail and overall visual appeal, as "
                  "an art director would, whatever the prompt asks for."),
    "fidelity": ("Fidelity: look for distorted shapes, broken anatomy (hands, faces, limbs), melted or "
                 "duplicated regions, noise, blur and other generation artifacts. An image free of them earns "
                 "the top score."),
    "harmlessness": ("Harmlessness: look for violent, sexual, hateful, dangerous or otherwise disturbing "
                     "content. An image with none earns the top score."),
}


@dataclass(frozen=True)
class PromptPreset:
    key: str
    label: str
    aspects: tuple[str, ...]  # the aspects its rubric covers (launch its score jobs with these)
    template: str


def _preset(key: str, label: str, aspects: tuple[str, ...]) -> PromptPreset:
    rubric = "\n".join(_RUBRICS[a] for a in aspects)
    head = ("You are an expert judge of images generated from text. The image was generated from the "
            "prompt: \"{prompt}\".\n")
    return PromptPreset(key=key, label=label, aspects=aspects, template=f"{head}{rubric}\n{_SCORE_TAIL}")


PRESET_BACKENDS = ("mllm_transformers", "openai_chat")  # the backends whose templates these are

PRESETS: dict[str, PromptPreset] = {p.key: p for p in [
    _preset("visionprefer", "VisionPrefer: all four aspects", tuple(_RUBRICS)),
    *[_preset(f"visionprefer_{aspect}", f"VisionPrefer: {aspect.replace('_', ' ')}", (aspect,))
      for aspect in _RUBRICS],
]}


# --- the catalogue -------------------------------------------------------------------------------------

_OPENAI_VIT_L14 = HubFile(
    "timm/vit_large_patch14_clip_224.openai", "open_clip_pytorch_model.bin",
    revision=None,  # unpinned: resolved at first save
    checksum=None)
_CLIP_H14 = HubFile(
    "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
    revision=None,  # unpinned: resolved at first save
    checksum=None)
_MLLM_FORMULA = ("per aspect, the integer 1..scale the judge answers in JSON against a schema (with its "
                 "rationale); pairs: first / second / tie per aspect, asked in both orders")
_SERVED = ("any OpenAI-compatible chat-completions server; the model's name on the server is model_ref, "
           "parameters.base_url the server's /v1 URL; a key, if the server wants one, from JUDGE_API_KEY")

ENTRIES: dict[str, CatalogueEntry] = {e.key: e for e in [
    CatalogueEntry(
        key="clipscore_vit_l14", label="CLIPScore (OpenAI CLIP ViT-L/14)", backend="clipscore",
        model=_OPENAI_VIT_L14, parameters={"model_name": "ViT-L-14-quickgelu"},
        licence="MIT (OpenAI CLIP)", input_size="224 x 224",
        formula="2.5 * max(cos(image, prompt), 0)",
        notes="Hessel et al. 2021, with ViT-L/14 instead of ViT-B/32. OpenAI's weights as open_clip loads them "
              "(QuickGELU). Stored under aspect prompt_following."),
    CatalogueEntry(
        key="laion_aesthetic_v2", label="LAION aesthetic predictor v2", backend="laion_aesthetic",
        model=_OPENAI_VIT_L14, parameters={"model_name": "ViT-L-14-quickgelu"},
        files={"head_path": HubFile(
            "camenduru/improved-aesthetic-predictor", "sac+logos+ava1-l14-linearMSE.pth",
            revision=None,  # unpinned: resolved at first save
            checksum=None)},
        licence="Apache-2.0 (improved-aesthetic-predictor); MIT (OpenAI CLIP)", input_size="224 x 224",
        formula="MLP head (768-1024-128-64-16-1) on the L2-normalised ViT-L/14 image embedding, about 1..10",
        notes="The head sac+logos+ava1-l14-linearMSE.pth released on GitHub (christophschuhmann/"
              "improved-aesthetic-predictor), from a Hub mirror. Reads no prompt; stored under aspect aesthetic."),
    CatalogueEntry(
        key="hpsv2_1", label="HPS v2.1", backend="hpsv2",
        model=HubFile("xswu/HPSv2", "HPS_v2.1_compressed.pt",
                      revision=None,  # unpinned: resolved at first save
                      checksum=None),
        parameters={"model_name": "ViT-H-14"},
        licence="Apache-2.0", input_size="224 x 224",
        formula="100 * cos(image, prompt)",
        notes="Human Preference Score v2.1: an open_clip ViT-H/14 fine-tuned on HPD v2. Stored under aspect overall."),
    CatalogueEntry(
        key="pickscore_v1", label="PickScore v1", backend="pickscore",
        model=HubFile("yuvalkirstain/PickScore_v1",
                      revision=None,  # unpinned: resolved at first save
                      checksum=None),
        files={"processor_path": _CLIP_H14},
        licence="MIT (PickScore code); processor from LAION CLIP-ViT-H-14 (MIT)", input_size="224 x 224",
        formula="logit_scale.exp() * cos(image, prompt)",
        notes="A transformers CLIPModel (ViT-H/14) fine-tuned on Pick-a-Pic; its processor is CLIP-H's. "
              "Stored under aspect overall."),
    CatalogueEntry(
        key="qwen2_5_vl_7b", label="Qwen2.5-VL-7B-Instruct (transformers)", backend="mllm_transformers",
        model=HubFile("Qwen/Qwen2.5-VL-7B-Instruct",
                      revision=None,  # unpinned: resolved at first save
                      checksum=None),
        licence="Apache-2.0", input_size="dynamic (28 px per vision token); shrunk to image_max_side 768",
        formula=_MLLM_FORMULA,
        notes="About 16 GB of bf16 weights: a GPU worker. Presets: VisionPrefer templates for score jobs."),
    CatalogueEntry(
        key="openai_chat_vllm", label="MLLM judge on vLLM", backend="openai_chat",
        served_model="Qwen/Qwen2.5-VL-7B-Instruct", parameters={"base_url": "http://localhost:8000/v1"},
        licence="that of the served model", input_size="the server's", formula=_MLLM_FORMULA,
        notes=f"{_SERVED}. vLLM: `vllm serve Qwen/Qwen2.5-VL-7B-Instruct` (port 8000)."),
    CatalogueEntry(
        key="openai_chat_ollama", label="MLLM judge on Ollama", backend="openai_chat",
        served_model="qwen2.5vl:7b", parameters={"base_url": "http://localhost:11434/v1"},
        licence="that of the served model", input_size="the server's", formula=_MLLM_FORMULA,
        notes=f"{_SERVED}. Ollama: `ollama pull qwen2.5vl:7b`; it serves http://localhost:11434/v1."),
    CatalogueEntry(
        key="openai_chat_llamacpp", label="MLLM judge on llama.cpp's server", backend="openai_chat",
        served_model="qwen2.5-vl-7b", parameters={"base_url": "http://localhost:8080/v1"},
        licence="that of the served model", input_size="the server's", formula=_MLLM_FORMULA,
        notes=f"{_SERVED}. llama.cpp: `llama-server -m <model>.gguf --mmproj <mmproj>.gguf` (port 8080); "
              f"it answers for the model it loaded whatever the name."),
]}


def entry_get(key: str) -> CatalogueEntry:
    """The entry `key`; ValidationError (field `catalogue`) naming the known ones otherwise."""
    try:
        return ENTRIES[key]
    except KeyError:
        raise ValidationError({"catalogue": f"no catalogue entry {key!r}; known: {', '.join(ENTRIES)}"}) from None


def preset_get(key: str) -> PromptPreset:
    try:
        return PRESETS[key]
    except KeyError:
        raise ValidationError({"preset": f"no prompt preset {key!r}; known: {', '.join(PRESETS)}"}) from None


def catalogue_fields(*, key: str, model_ref: str = "", parameters: dict | None = None, preset: str = "",
                     prompt_template: str = "") -> dict:
    """The backend, model_ref, parameters and prompt template of an annotator made from entry `key`:
    a `model_ref` given replaces the entry's, `parameters` given go over the entry's, and the prompt
    template is the one given, else the preset's, else the entry's. A preset only for backends that
    take a prompt template of that kind (the MLLM judges)."""
    entry = entry_get(key)
    if parameters is not None and not isinstance(parameters, dict):
        raise ValidationError({"parameters": "must be a JSON object"})
    if preset and entry.backend not in PRESET_BACKENDS:
        raise ValidationError({"preset": f"prompt presets are for MLLM judges, not {entry.backend}"})
    return {"backend": entry.backend, "model_ref": model_ref or entry.model_ref,
            "parameters": {**entry.annotator_parameters(), **(parameters or {})},
            "prompt_template": prompt_template or (preset_get(preset).template if preset else entry.prompt_template)}


def machine_annotator_create_from_catalogue(*, key: str, name: str = "", model_ref: str = "",
                                            parameters: dict | None = None, preset: str = "",
                                            prompt_template: str = "", is_active: bool = True,
                                            created_by=None) -> MachineAnnotator:
    """An annotator made from catalogue entry `key` (see `catalogue_fields` for what may be
    overridden), named `name` or the entry's label, checked and stored by
    `services.machine_annotator_create`. Asks the Hub: not inside a transaction."""
    fields = catalogue_fields(key=key, model_ref=model_ref, parameters=parameters, preset=preset,
                              prompt_template=prompt_template)
    return services.machine_annotator_create(name=name or entry_get(key).label, is_active=is_active,
                                             created_by=created_by, **fields)


def catalogue_rows() -> list[dict]:
    """The catalogue as the API shows it."""
    def hub_file(f: HubFile | None):
        return None if f is None else {"repo_id": f.repo_id, "file": f.file, "revision": f.revision,
                                       "checksum": f.checksum, "reference": f.reference}

    return [{"key": e.key, "label": e.label, "backend": e.backend, "model_ref": e.model_ref,
             "model": hub_file(e.model), "files": {name: hub_file(f) for name, f in e.files.items()},
             "parameters": e.annotator_parameters(), "licence": e.licence, "input_size": e.input_size,
             "formula": e.formula, "notes": e.notes} for e in ENTRIES.values()]
