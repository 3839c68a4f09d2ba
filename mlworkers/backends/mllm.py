"""MLLM judges run in the worker process with transformers (Qwen2.5-VL, LLaVA and the like).

The checkpoint is a local folder (or an S3 key or Hub reference that `mlworkers.weights` fetches:
`hf://org/repo[@revision]`, or a plain `org/repo` such as `Qwen/Qwen2.5-VL-7B-Instruct`) holding an
`AutoModelForImageTextToText` model and its `AutoProcessor` with a chat template. One generation
per image asks all aspects at once (VisionPrefer-style); one per pair shows both images in the
given order. Generations are batched with left padding and decoded greedily by default; with
`do_sample` they are sampled at `temperature`, and a pair asked for k samples is k rows of the
batch, each drawing its own answer (the checkpoint's other generation settings, such as top-k or
a repetition penalty, still apply). The answers are read strictly by `mlworkers.verdicts`: a
malformed answer is a failed item that keeps the raw text, never a score. Weights that are missing or do not fit the architecture are a
`BackendError` for the whole job; an unreadable image fails only its own item.
"""
import io
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from PIL import Image

from mlworkers.backends.base import (
    Aspect, Backend, BackendError, ImageRef, PairRequest, PairResult, Progress, ScoreRequest, ScoreResult,
    register,
)
from mlworkers.verdicts import UnreadableAnswer, pair_prompt, parse_pair, parse_scores, score_prompt
from mlworkers.weights import resolve_device

logger = logging.getLogger(__name__)

PARAMETER_DEFAULTS = {
    "max_new_tokens": 256,
    "batch_size": 8,  # generations per forward pass (a pair's samples are generations too)
    "dtype": "auto",  # bfloat16 on CUDA, float32 on CPU; or "bfloat16", "float16", "float32"
    "image_source": "original",  # or "preview"
    "image_max_side": 768,  # images are shrunk to this long side first, bounding the vision tokens
    "do_sample": False,  # greedy answers are the same every time: samples > 1 need True
    "temperature": 1.0,  # used when do_sample is true
}
_DTYPES = ("auto", "bfloat16", "float16", "float32")
RAW_LIMIT = 4000
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


@dataclass(frozen=True)
class _Generation:
    """One chat turn to generate: the prompt text and the images shown before it, in order."""

    text: str
    images: list


@dataclass(frozen=True)
class _Ask:
    """One item to answer `copies` times: the prompt, the question and the images shown in order."""

    prompt: str
    text: str
    images: Sequence[ImageRef]
    copies: int


@dataclass(frozen=True)
class _Answer:
    text: str
    cut_off: bool  # the judge stopped at max_new_tokens


@register
@dataclass(eq=False)
class TransformersMLLMBackend(Backend):
    name = "mllm_transformers"
    can_score = True
    can_judge_pairs = True
    requires = ("torch", "transformers")
    extra = "ml"
    parameter_names = tuple(PARAMETER_DEFAULTS)
    weights = "transformers"

    def __post_init__(self):
        """Check the parameters and load the model and processor once (BackendError if either fails)."""
        params = self.parameters_with_defaults(PARAMETER_DEFAULTS)
        checked = self._settings(params)
        self._max_new_tokens, self._batch_size = checked["max_new_tokens"], checked["batch_size"]
        self._image_max_side, self._temperature = checked["image_max_side"], checked["temperature"]
        self._do_sample = params["do_sample"]
        self._image_source = params["image_source"]
        self.device = resolve_device(self.device)
        self._model, self._processor = self._load(params["dtype"])

    @classmethod
    def check_parameters(cls, parameters: dict) -> None:
        super().check_parameters(parameters)
        cls._settings({**PARAMETER_DEFAULTS, **parameters})

    @classmethod
    def _settings(cls, params: dict) -> dict:
        """The numbers of `params` (defaults included), checked; BackendError naming a bad value."""
        try:
            numbers = {key: int(params[key]) for key in ("max_new_tokens", "batch_size", "image_max_side")}
        except (TypeError, ValueError):
            raise BackendError(f"{cls.name}: max_new_tokens, batch_size and image_max_side must be whole numbers") \
                from None
        if min(numbers.values()) < 1:
            raise BackendError(f"{cls.name}: max_new_tokens, batch_size and image_max_side must be positive")
        if params["image_source"] not in ("original", "preview"):
            raise BackendError(f"{cls.name}: image_source must be 'original' or 'preview'")
        if params["dtype"] not in _DTYPES:
            raise BackendError(f"{cls.name}: dtype must be one of {', '.join(_DTYPES)}")
        if not isinstance(params["do_sample"], bool):
            raise BackendError(f"{cls.name}: do_sample must be true or false")
        try:
            numbers["temperature"] = float(params["temperature"])
        except (TypeError, ValueError):
            raise BackendError(f"{cls.name}: temperature must be a number") from None
        if numbers["temperature"] <= 0:
            raise BackendError(f"{cls.name}: temperature must be above 0 (for greedy answers leave do_sample false)")
        return numbers

    def __repr__(self):
        return f"{type(self).__name__}(model_ref={self.model_ref!r}, device={self.device!r})"

    @classmethod
    def sampling_refusal(cls, parameters: dict) -> str:
        """Samples need do_sample true (the default, greedy decoding, answers the same every time)."""
        if parameters.get("do_sample", PARAMETER_DEFAULTS["do_sample"]) is not True:
            return f"{cls.name} decodes greedily and answers the same every time; set parameters.do_sample to true"
        return ""

    # --- the interface ------------------------------------------------------------------------

    def score(self, requests: Sequence[ScoreRequest], progress: Progress | None = None) -> list[ScoreResult]:
        """One result per (request, image, aspect), in that order; one generation per image."""
        items, asks = [], []
        for request in requests:
            text = self._render(score_prompt, request.prompt, request.aspects, request.scale)
            for image in request.images:
                items.append((request, image))
                asks.append(_Ask(request.prompt, text, [image], 1))

        def read(position: int, answers) -> list[ScoreResult]:
            request, image = items[position]
            if isinstance(answers, str):
                return _failed_scores(image, request.aspects, answers)
            return _read_scores(image, request, answers[0])

        return self._results_of(asks, read, progress)

    def judge_pairs(self, requests: Sequence[PairRequest], progress: Progress | None = None) -> list[PairResult]:
        """One result per (request, sample, aspect), in that order; one generation per sample of a
        request, the images shown `first` then `second`, each result tagged with its sample.
        Several samples of one request need do_sample (else they would be one answer k times)."""
        if not self._do_sample and any(len(request.samples) > 1 for request in requests):
            raise BackendError(f"{self.name}: several samples of a pair need parameters.do_sample true")
        asks = [_Ask(request.prompt, self._render(pair_prompt, request.prompt, request.aspects),
                     [request.first, request.second], len(request.samples)) for request in requests]

        def read(index: int, answers) -> list[PairResult]:
            request, results = requests[index], []
            for position, sample in enumerate(request.samples):
                if isinstance(answers, str):
                    results += _failed_pairs(request, answers, sample=sample)
                else:
                    results += _read_pair(request, answers[position], sample)
            return results

        return self._results_of(asks, read, progress)

    def _results_of(self, asks: Sequence["_Ask"], read: Callable, progress: Progress | None) -> list:
        """read(i, answers) for each ask's answers, in order, each batch's given to `progress` as it ends."""
        results = []
        for start, outcomes in self._answer_batches(asks):
            batch = [result for offset, answers in enumerate(outcomes) for result in read(start + offset, answers)]
            if progress is not None:
                progress(batch)
            results += batch
        return results

    # --- one item -----------------------------------------------------------------------------

    def _render(self, prompt_for, *args) -> str:
        try:
            return prompt_for(self.prompt_template, *args)
        except (KeyError, IndexError, ValueError) as exc:  # a template naming unknown fields
            raise BackendError(f"{self.name}: the prompt template does not fit "
                               f"({exc.__class__.__name__}: {exc})") from None

    def _prepare(self, prompt: str, text: str, images: Sequence[ImageRef]) -> _Generation | str:
        """The generation asking `text` about `images` shown in order, or this item's error."""
        if not prompt.strip():
            return "empty prompt"
        pictures = []
        for image in images:
            picture = self._read_image(image)
            if isinstance(picture, str):
                return picture
            pictures.append(picture)
        content = [*({"type": "image"} for _ in pictures), {"type": "text", "text": text}]
        chat = self._processor.apply_chat_template([{"role": "user", "content": content}],
                                                   add_generation_prompt=True, tokenize=False)
        return _Generation(chat, pictures)

    def _read_image(self, image: ImageRef) -> Image.Image | str:
        """The RGB picture, shrunk to image_max_side on its long side, or this item's error."""
        if self.read_bytes is None:
            raise BackendError(f"{self.name}: no read_bytes given to read images with")
        key = image.storage_key if self._image_source == "original" else image.preview_key
        try:
            data = self.read_bytes(key)
        except Exception as exc:  # storage is a boundary: any failure to read is this item's
            return f"cannot read image {key}: {exc.__class__.__name__}: {exc}"
        try:
            with Image.open(io.BytesIO(data)) as opened:
                picture = opened.convert("RGB")
        except _DECODE_ERRORS as exc:
            return f"image {key} cannot be decoded: {exc.__class__.__name__}: {exc}"
        picture.thumbnail((self._image_max_side, self._image_max_side), Image.Resampling.BICUBIC)
        return picture

    # --- the model ----------------------------------------------------------------------------

    def _load(self, dtype_name: str):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from mlworkers.weights import autocast_dtype, local_path

        path = local_path(self.model_ref, hub_files="transformers")  # BackendError when absent
        if not (path / "config.json").is_file():
            raise BackendError(f"{self.name}: {self.model_ref!r} is not a model folder (no config.json in {path})")
        device = torch.device(self.device)
        dtype = autocast_dtype(self.device) if dtype_name == "auto" else getattr(torch, dtype_name)
        try:
            processor = AutoProcessor.from_pretrained(path, local_files_only=True, padding_side="left")
            # Misfitting weights are let through here and refused below, with their names and shapes.
            model, info = AutoModelForImageTextToText.from_pretrained(
                path, local_files_only=True, dtype=dtype, output_loading_info=True, ignore_mismatched_sizes=True)
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
            raise BackendError(f"{self.name}: cannot load {self.model_ref!r} from {path}: "
                               f"{exc.__class__.__name__}: {exc}") from exc
        # transformers would fill these with random weights and only warn: a judge that says nonsense.
        misfits = sorted(f"{key} (checkpoint {_shape(saved)}, model {_shape(wanted)})"
                         for key, saved, wanted in info.get("mismatched_keys") or ())
        misfits += sorted(f"{key} (missing)" for key in info.get("missing_keys") or ())
        if misfits:
            more = f" and {len(misfits) - 3} more" if len(misfits) > 3 else ""
            raise BackendError(f"{self.name}: the weights in {path} do not fit the model's architecture: "
                               f"{'; '.join(misfits[:3])}{more}")
        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is None or not getattr(processor, "chat_template", None):
            raise BackendError(f"{self.name}: the processor in {path} needs a tokenizer and a chat template")
        tokenizer.padding_side = "left"  # batched generation continues every row from its last token
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.to(device).eval()
        logger.info("%s: loaded %s (%s) on %s in %s", self.name, self.model_ref, type(model).__name__, device, dtype)
        return model, processor

    def _answer_batches(self, asks: Sequence[_Ask]) -> Iterator[tuple[int, list[list[_Answer] | str]]]:
        """(index of the first ask, outcomes) batch after batch, each outcome an ask's `copies`
        answers from the judge or the item's error. Asks are read and generated about batch_size
        generations at a time (an ask's copies stay together), so only their pictures are in memory."""
        start = 0
        while start < len(asks):
            end, rows = start + 1, asks[start].copies
            while end < len(asks) and rows + asks[end].copies <= self._batch_size:
                rows += asks[end].copies
                end += 1
            prepared = [(self._prepare(ask.prompt, ask.text, ask.images), ask.copies) for ask in asks[start:end]]
            ready = [(generation, copies) for generation, copies in prepared if isinstance(generation, _Generation)]
            answers = iter(self._generate(ready) if ready else ())
            yield start, [[next(answers) for _ in range(copies)] if isinstance(generation, _Generation) else generation
                          for generation, copies in prepared]
            start = end

    def _generate(self, batch: Sequence[tuple[_Generation, int]]) -> list[_Answer]:
        """Answers for each generation's copies, in order: each copy is its own row, so with
        do_sample every copy draws its own answer."""
        import torch

        rows = [generation for generation, copies in batch for _ in range(copies)]
        inputs = self._processor(text=[g.text for g in rows], images=[g.images for g in rows],
                                 padding=True, return_tensors="pt")
        inputs = inputs.to(self._model.device, self._model.dtype)
        tokenizer = self._processor.tokenizer
        decoding = {"do_sample": True, "temperature": self._temperature} if self._do_sample else {"do_sample": False}
        with torch.inference_mode():
            output = self._model.generate(**inputs, max_new_tokens=self._max_new_tokens, num_beams=1,
                                          pad_token_id=tokenizer.pad_token_id, **decoding)
        new_tokens = output[:, inputs["input_ids"].shape[1]:]  # the prompt is echoed first
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        eos = self._model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        return [_Answer(text.strip(), cut_off=not eos_ids.intersection(row.tolist()))
                for text, row in zip(texts, new_tokens)]


def _shape(size) -> str:
    return "x".join(str(n) for n in size)


# --- reading answers -----------------------------------------------------------------------------

def _unreadable(exc: UnreadableAnswer, answer: _Answer) -> str:
    return f"{exc} (the answer stopped at max_new_tokens)" if answer.cut_off else str(exc)


def _failed_scores(image: ImageRef, aspects: Sequence[Aspect], error: str, raw: str = "") -> list[ScoreResult]:
    return [ScoreResult(image.image_id, a.key, None, error=error, raw=raw[:RAW_LIMIT]) for a in aspects]


def _failed_pairs(request: PairRequest, error: str, raw: str = "", *, sample: int = 0) -> list[PairResult]:
    return [PairResult(request.first.image_id, request.second.image_id, a.key, None, error=error, raw=raw[:RAW_LIMIT],
                       sample=sample) for a in request.aspects]


def _read_scores(image: ImageRef, request: ScoreRequest, answer: _Answer) -> list[ScoreResult]:
    try:
        scores = parse_scores(answer.text, request.aspects, request.scale)
    except UnreadableAnswer as exc:
        return _failed_scores(image, request.aspects, _unreadable(exc, answer), answer.text)
    return [ScoreResult(image.image_id, key, float(score), rationale=rationale)
            for key, (score, rationale) in scores.items()]


def _read_pair(request: PairRequest, answer: _Answer, sample: int) -> list[PairResult]:
    try:
        verdicts = parse_pair(answer.text, request.aspects)
    except UnreadableAnswer as exc:
        return _failed_pairs(request, _unreadable(exc, answer), answer.text, sample=sample)
    return [PairResult(request.first.image_id, request.second.image_id, key, choice, rationale=rationale,
                       sample=sample) for key, (choice, rationale) in verdicts.items()]
