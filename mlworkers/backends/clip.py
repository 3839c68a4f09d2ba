"""CLIP-family scorers: one number per image from an image/text embedding model.

| backend | model | value stored |
|---|---|---|
| `clipscore` | open_clip | CLIPScore: `2.5 * max(cos(image, prompt), 0)` (Hessel et al. 2021), in [0, 2.5] |
| `laion_aesthetic` | open_clip image tower + LAION aesthetic predictor v2 head | the head's output (about 1..10) |
| `hpsv2` | open_clip (ViT-H-14 with an HPS v2 checkpoint) | `100 * cos(image, prompt)`, as HPS v2 reports it |
| `pickscore` | transformers CLIPModel (PickScore_v1) | `logit_scale.exp() * cos(image, prompt)` |

Each scores one aspect (parameter `aspect`; defaults below) and ignores a request's other
aspects: one result per image, in request order. The prompt-based scorers fail an image whose
prompt is empty ("empty prompt"); the aesthetic predictor does not read the prompt. A preview
that cannot be read or decoded fails alone, with the reason.

Parameters: `aspect`; `batch_size` (default 32); `num_workers` (DataLoader worker processes,
default: the cores this worker may use less 2, at most 12; 0 reads in the calling process); `model_name` (open_clip built-in
architecture, `model_ref` then being its checkpoint); `head_path` (laion_aesthetic: the head's
weights, local, s3:// or hf://); `processor_path` (pickscore: a processor saved elsewhere).
`model_ref` may name a Hub repo (see `mlworkers.hub`): `hf://org/repo[@revision][/path]`, or
`hf-hub:org/repo` for the open_clip ones and a plain `org/repo` for pickscore.
`prompt_template`, when it contains `{prompt}`, wraps the prompt before encoding.

Models are loaded when the backend is built (once per worker process) and kept. Scoring runs
under `torch.inference_mode()`, with autocast to bf16 (fp16 where bf16 is missing) on CUDA
and in fp32 on CPU; similarities are taken in fp32 from L2-normalised embeddings.
"""
import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from mlworkers.backends.base import Backend, BackendError, ImageRef, Progress, ScoreRequest, ScoreResult, register
from mlworkers.pipeline import default_num_workers, iter_preview_batches, split_normalisation
from mlworkers.weights import resolve_device

CLIPSCORE_WEIGHT = 2.5


@dataclass
class ClipFamilyBackend(Backend):
    """Shared batching: text embeddings once per distinct prompt, previews streamed through the
    DataLoader, image embeddings per batch. Subclasses load a model and say how to embed and score.
    (A dataclass again, so that the generated __init__ calls __post_init__, which loads the model.)"""

    can_score: ClassVar[bool] = True
    requires: ClassVar[tuple[str, ...]] = ("torch", "torchvision", "open_clip")
    extra: ClassVar[str] = "ml"
    default_aspect: ClassVar[str] = "overall"
    needs_prompt: ClassVar[bool] = True
    parameter_names: ClassVar[tuple[str, ...]] = ("aspect", "batch_size", "num_workers")

    @classmethod
    def check_parameters(cls, parameters: dict) -> None:
        super().check_parameters(parameters)
        _int_parameter(parameters, "batch_size", 32, minimum=1)
        _int_parameter(parameters, "num_workers", 0, minimum=0)

    def __post_init__(self):
        params = self.parameters or {}
        self.aspect = self.scored_aspect(params)
        self.batch_size = _int_parameter(params, "batch_size", 32, minimum=1)
        self.num_workers = _int_parameter(params, "num_workers", default_num_workers(), minimum=0)
        self.device = resolve_device(self.device)
        self.load()

    @classmethod
    def scored_aspect(cls, parameters: dict) -> str:
        return str((parameters or {}).get("aspect") or cls.default_aspect)

    # --- what a family member provides -------------------------------------------------------
    on_device = None  # finishes a batch on the device (see pipeline.split_normalisation)

    def load(self) -> None:
        """Load the model once; set `self.preprocess` (PIL image -> tensor, run in workers) and
        `self.on_device` where preprocessing ends on the device."""
        raise NotImplementedError

    def encode_texts(self, texts: list[str]):
        """L2-normalised fp32 text embeddings, one row per text."""
        raise NotImplementedError

    def encode_images(self, pixels):
        """L2-normalised fp32 image embeddings, one row per image."""
        raise NotImplementedError

    def values(self, image_embeddings, text_embeddings):
        """The stored value per row (`text_embeddings[i]` is row i's prompt; None without prompts)."""
        raise NotImplementedError

    # --- scoring ------------------------------------------------------------------------------
    def score(self, requests: Sequence[ScoreRequest], progress: Progress | None = None) -> list[ScoreResult]:
        if self.read_bytes is None:
            raise BackendError(f"{self.name} needs read_bytes to read the previews")
        import torch

        items: list[tuple[ImageRef, str]] = [(image, self._text(r.prompt)) for r in requests for image in r.images]
        results: list[ScoreResult | None] = [None] * len(items)
        wanted: list[int] = []  # item indices to read
        prompt_index: dict[str, int] = {}
        prompt_of: list[int] = []  # per wanted item
        for i, (image, text) in enumerate(items):
            if self.needs_prompt and not text:
                results[i] = self._failed(image, "empty prompt")
                continue
            wanted.append(i)
            prompt_of.append(prompt_index.setdefault(text, len(prompt_index)))
        if not wanted:
            return results

        with torch.inference_mode(), self._autocast():
            texts = None
            if self.needs_prompt:
                prompts = list(prompt_index)
                texts = torch.cat([self.encode_texts(prompts[i:i + self.batch_size])
                                   for i in range(0, len(prompts), self.batch_size)])
            batches = iter_preview_batches([items[i][0].preview_key for i in wanted], read_bytes=self.read_bytes,
                                           preprocess=self.preprocess, on_device=self.on_device,
                                           batch_size=self.batch_size, device=self.device,
                                           num_workers=self.num_workers)
            for batch in batches:
                for position, reason in batch.failures:
                    results[wanted[position]] = self._failed(items[wanted[position]][0], reason)
                if batch.pixels is not None:
                    images = self.encode_images(batch.pixels)
                    rows = None if texts is None else texts[torch.tensor([prompt_of[p] for p in batch.positions],
                                                                         device=texts.device)]
                    for position, value in zip(batch.positions, self.values(images, rows).float().cpu().tolist()):
                        image = items[wanted[position]][0]
                        results[wanted[position]] = (
                            ScoreResult(image_id=image.image_id, aspect=self.aspect, value=float(value))
                            if math.isfinite(value) else self._failed(image, f"non-finite score {value}"))
                if progress is not None:
                    progress([results[wanted[p]] for p in [*batch.positions, *(p for p, _ in batch.failures)]])
        return results

    def _text(self, prompt: str) -> str:
        prompt = (prompt or "").strip()
        if prompt and "{prompt}" in (self.prompt_template or ""):
            return self.prompt_template.replace("{prompt}", prompt)
        return prompt

    def _failed(self, image: ImageRef, reason: str) -> ScoreResult:
        return ScoreResult(image_id=image.image_id, aspect=self.aspect, value=None, error=reason)

    def _autocast(self):
        import torch

        from mlworkers.weights import autocast_dtype

        if str(self.device).startswith("cuda"):
            return torch.autocast(device_type="cuda", dtype=autocast_dtype(self.device))
        return contextlib.nullcontext()


def _int_parameter(params: dict, name: str, default: int, *, minimum: int) -> int:
    value = params.get(name, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BackendError(f"parameter {name} must be an integer, not {value!r}") from None
    if number < minimum:
        raise BackendError(f"parameter {name} must be at least {minimum}, not {number}")
    return number


def _normalised(features):
    import torch

    if not isinstance(features, torch.Tensor):  # transformers 5 returns an output object
        features = features.pooler_output
    return torch.nn.functional.normalize(features.float(), dim=-1)


class OpenClipBackend(ClipFamilyBackend):
    parameter_names = (*ClipFamilyBackend.parameter_names, "model_name")
    weights = "open_clip"

    def load(self) -> None:
        from mlworkers.backends.clip_models import load_open_clip

        self.loaded = load_open_clip(self.model_ref, model_name=str(self.parameters.get("model_name") or ""),
                                     device=self.device, with_tokenizer=self.needs_prompt)
        self.model = self.loaded.model
        self.preprocess, self.on_device = split_normalisation(self.loaded.preprocess)

    def encode_texts(self, texts):
        tokens = self.loaded.tokenizer(texts).to(self.device)
        return _normalised(self.model.encode_text(tokens))

    def encode_images(self, pixels):
        return _normalised(self.model.encode_image(pixels))


@register
class ClipScoreBackend(OpenClipBackend):
    """CLIPScore (Hessel et al. 2021): `2.5 * max(cos, 0)`; the 2.5 stretches typical cosines
    (0.2..0.4) toward [0, 1]. Stored as computed, in [0, 2.5]."""

    name = "clipscore"
    default_aspect = "prompt_following"

    def values(self, image_embeddings, text_embeddings):
        cosine = (image_embeddings * text_embeddings).sum(-1)
        return CLIPSCORE_WEIGHT * cosine.clamp(min=0)


@register
class HPSv2Backend(OpenClipBackend):
    """Human Preference Score v2: `100 * cos(image, prompt)` from an HPS v2 fine-tuned ViT-H-14."""

    name = "hpsv2"
    default_aspect = "overall"

    def values(self, image_embeddings, text_embeddings):
        return 100.0 * (image_embeddings * text_embeddings).sum(-1)


@register
class LaionAestheticBackend(OpenClipBackend):
    """LAION aesthetic predictor v2: its MLP head on the L2-normalised open_clip image embedding
    (ViT-L/14 for the released heads). Reads no prompt."""

    name = "laion_aesthetic"
    default_aspect = "aesthetic"
    needs_prompt = False
    parameter_names = (*OpenClipBackend.parameter_names, "head_path")
    reference_parameters = (("head_path", "file"),)

    @classmethod
    def check_parameters(cls, parameters: dict) -> None:
        super().check_parameters(parameters)
        if not parameters.get("head_path"):
            raise BackendError(f"{cls.name} needs the parameter head_path: the aesthetic head's weights file")

    def load(self) -> None:
        from mlworkers.backends.clip_models import load_aesthetic_head

        head_path = self.parameters.get("head_path")
        if not head_path:
            raise BackendError("laion_aesthetic needs the parameter head_path: the aesthetic head's weights file")
        super().load()
        self.head = load_aesthetic_head(str(head_path), tower_width=self.model.visual.output_dim, device=self.device)

    def values(self, image_embeddings, text_embeddings):
        return self.head(image_embeddings).squeeze(-1)


@register
class PickScoreBackend(ClipFamilyBackend):
    """PickScore: `logit_scale.exp() * cos(image, prompt)` from a transformers CLIPModel."""

    name = "pickscore"
    default_aspect = "overall"
    requires = ("torch", "transformers")  # transformers' image processor runs without torchvision
    parameter_names = (*ClipFamilyBackend.parameter_names, "processor_path")
    weights = "transformers"
    reference_parameters = (("processor_path", "processor"),)

    def load(self) -> None:
        from mlworkers.backends.clip_models import HFImagePreprocess, load_hf_clip

        self.loaded = load_hf_clip(self.model_ref, processor_ref=str(self.parameters.get("processor_path") or ""),
                                   device=self.device)
        self.model = self.loaded.model
        self.preprocess = HFImagePreprocess(self.loaded.processor.image_processor)
        self.max_length = self.model.config.text_config.max_position_embeddings

    def encode_texts(self, texts):
        tokens = self.loaded.processor.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                                 return_tensors="pt").to(self.device)
        return _normalised(self.model.get_text_features(**tokens))

    def encode_images(self, pixels):
        return _normalised(self.model.get_image_features(pixel_values=pixels))

    def values(self, image_embeddings, text_embeddings):
        return self.model.logit_scale.exp().float() * (image_embeddings * text_embeddings).sum(-1)
