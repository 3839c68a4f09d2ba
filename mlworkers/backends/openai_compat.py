"""MLLM judges behind any OpenAI-compatible chat-completions endpoint (vLLM, hosted APIs).

One request per image (all asked aspects at once, VisionPrefer-style) or per sample of a pair
shown in the given order (k samples are k requests, not the `n` parameter, which not every
server honours); answers are JSON asked for against a schema and read strictly by
`mlworkers.verdicts`. A malformed answer is a failed item that keeps the raw text; an endpoint
that cannot be reached or refuses the key, model or URL is a `BackendError` for the whole job.

The API key (`settings.JUDGE_API_KEY`) is sent as a Bearer token and scrubbed from every text
this module returns, raises or logs.
"""
import base64
import json
import logging
import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3

from mlworkers.backends.base import (
    Backend, BackendError, ImageRef, PairRequest, PairResult, Progress, ScoreRequest, ScoreResult, register,
)
from mlworkers.verdicts import (
    UnreadableAnswer, pair_prompt, pair_schema, parse_pair, parse_scores, score_prompt, score_schema,
)

logger = logging.getLogger(__name__)

PARAMETER_DEFAULTS = {
    "base_url": "",  # required, e.g. http://127.0.0.1:8000/v1
    "temperature": 0.0,  # 0 answers the same every time: samples > 1 need more
    "max_tokens": 512,
    "timeout_s": 60.0,  # per attempt: connecting plus reading the answer
    "max_concurrency": 8,
    "max_retries": 4,  # retries after the first attempt, on 429, 5xx, timeouts and refused connections
    "backoff_s": 1.0,  # first retry's wait; doubled per retry, with jitter, capped at MAX_BACKOFF_S
    "use_response_format": True,
    "image_source": "original",  # or "preview"
}
MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 120.0
RAW_LIMIT = 4000
_FINAL_STATUSES = {401: "check JUDGE_API_KEY", 403: "the key may not use this model",
                   404: "check base_url and the model name"}
_MAGIC = [(b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"),
          (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif")]


class _Aborted(Exception):
    """Another item of the same batch hit a BackendError: stop asking."""


class _SharedQuestion:
    """The text and image parts of one pair request, built by the first of its samples to run and
    dropped once the last has asked, so k samples read the images once and only the requests
    being asked hold theirs in memory."""

    def __init__(self, build: Callable[[], tuple[str, list[dict], str]], uses: int):
        self._build, self._uses, self._value = build, uses, None
        self._lock = threading.Lock()

    def get(self) -> tuple[str, list[dict], str]:
        with self._lock:
            if self._value is None:
                self._value = self._build()
            return self._value

    def release(self) -> None:
        with self._lock:
            self._uses -= 1
            if self._uses <= 0:
                self._value = None


@dataclass(frozen=True)
class _Answer:
    text: str  # the judge's answer, or the endpoint's body when there is no answer
    error: str = ""  # set when there is no answer to parse
    cut_off: bool = False  # the judge stopped at max_tokens


def image_mime(data: bytes) -> str | None:
    """The MIME type of JPEG, PNG, GIF or WebP bytes, from their magic; None for anything else."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    return None


@register
@dataclass(eq=False)
class OpenAIChatBackend(Backend):
    name = "openai_chat"
    can_score = True
    can_judge_pairs = True
    parameter_names = tuple(PARAMETER_DEFAULTS)

    def __post_init__(self):
        from django.conf import settings

        params = self.parameters_with_defaults(PARAMETER_DEFAULTS)
        checked = self._settings(params)
        self._temperature, self._max_tokens = checked["temperature"], checked["max_tokens"]
        self._timeout_s, self._max_concurrency = checked["timeout_s"], checked["max_concurrency"]
        self._max_retries, self._backoff_s = checked["max_retries"], checked["backoff_s"]
        self._url = checked["base_url"] + "/chat/completions"
        self._use_response_format = bool(params["use_response_format"])
        self._image_source = params["image_source"]
        self._api_key = settings.JUDGE_API_KEY or ""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        # The key lives in the pool's default headers only, never in a local a traceback could show.
        self._http = urllib3.PoolManager(num_pools=2, maxsize=self._max_concurrency, headers=headers,
                                         retries=False, timeout=urllib3.Timeout(total=self._timeout_s))

    def __repr__(self):
        return f"{type(self).__name__}(model_ref={self.model_ref!r}, url={self._redact(self._url)!r})"

    @classmethod
    def check_parameters(cls, parameters: dict) -> None:
        super().check_parameters(parameters)
        cls._settings({**PARAMETER_DEFAULTS, **parameters})

    @classmethod
    def _settings(cls, params: dict) -> dict:
        """The base URL and numbers of `params` (defaults included), checked; BackendError naming a bad value."""
        base_url = str(params["base_url"] or "").rstrip("/")
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise BackendError(f"{cls.name}: parameter base_url must be an http(s) URL "
                               f"such as http://127.0.0.1:8000/v1")
        if params["image_source"] not in ("original", "preview"):
            raise BackendError(f"{cls.name}: image_source must be 'original' or 'preview'")
        try:
            checked = {"base_url": base_url, "temperature": float(params["temperature"]),
                       "max_tokens": int(params["max_tokens"]), "timeout_s": float(params["timeout_s"]),
                       "max_concurrency": int(params["max_concurrency"]), "max_retries": int(params["max_retries"]),
                       "backoff_s": float(params["backoff_s"])}
        except (TypeError, ValueError):
            raise BackendError(f"{cls.name}: temperature, max_tokens, timeout_s, max_concurrency, "
                               f"max_retries and backoff_s must be numbers") from None
        if min(checked["max_tokens"], checked["max_concurrency"]) < 1 or checked["timeout_s"] <= 0 or \
                checked["max_retries"] < 0 or checked["backoff_s"] < 0:
            raise BackendError(f"{cls.name}: max_tokens, max_concurrency and timeout_s must be positive, "
                               f"max_retries and backoff_s not negative")
        return checked

    @classmethod
    def sampling_refusal(cls, parameters: dict) -> str:
        """Samples need a temperature above 0 (the default, 0, answers the same every time)."""
        try:
            temperature = float(parameters.get("temperature", PARAMETER_DEFAULTS["temperature"]))
        except (TypeError, ValueError):
            return f"{cls.name}: temperature must be a number"
        if temperature <= 0:
            return (f"{cls.name} at temperature {temperature:g} answers the same every time; "
                    f"set parameters.temperature above 0 to sample")
        return ""

    # --- the interface ------------------------------------------------------------------------

    def score(self, requests: Sequence[ScoreRequest], progress: Progress | None = None) -> list[ScoreResult]:
        """One result per (request, image, aspect), in that order; one endpoint call per image."""
        jobs = [(request, image) for request in requests for image in request.images]
        per_image = self._run_all(jobs, lambda job, abort: self._score_image(*job, abort), progress)
        return [result for results in per_image for result in results]

    def judge_pairs(self, requests: Sequence[PairRequest], progress: Progress | None = None) -> list[PairResult]:
        """One result per (request, sample, aspect), in that order; one endpoint call per sample of
        a request, all through the same bounded pool and retries, each result tagged with its sample."""
        asks = []
        for request in requests:
            question = _SharedQuestion(lambda request=request: self._pair_question(request), len(request.samples))
            asks += [(request, sample, question) for sample in request.samples]
        per_sample = self._run_all(asks, lambda ask, abort: self._judge_pair(*ask, abort), progress)
        return [result for results in per_sample for result in results]

    # --- one item -----------------------------------------------------------------------------

    def _score_image(self, request: ScoreRequest, image: ImageRef, abort: threading.Event) -> list[ScoreResult]:
        def failed(error: str, raw: str = "") -> list[ScoreResult]:
            return [ScoreResult(image.image_id, a.key, None, error=error, raw=raw[:RAW_LIMIT])
                    for a in request.aspects]

        if not request.prompt.strip():
            return failed("empty prompt")
        parts, error = self._image_parts([image])
        if error:
            return failed(error)
        text = score_prompt(self.prompt_template, request.prompt, request.aspects, request.scale)
        answer = self._ask(text, parts, "aspect_scores", score_schema(request.aspects, request.scale), abort)
        if answer.error:
            return failed(answer.error, answer.text)
        try:
            scores = parse_scores(answer.text, request.aspects, request.scale)
        except UnreadableAnswer as exc:
            return failed(self._unreadable(exc, answer), answer.text)
        return [ScoreResult(image.image_id, key, float(score), rationale=rationale)
                for key, (score, rationale) in scores.items()]

    def _pair_question(self, request: PairRequest) -> tuple[str, list[dict], str]:
        """(text, image parts, "") to ask about `request`, or ("", [], this item's error)."""
        if not request.prompt.strip():
            return "", [], "empty prompt"
        parts, error = self._image_parts([request.first, request.second])
        if error:
            return "", [], error
        return pair_prompt(self.prompt_template, request.prompt, request.aspects), parts, ""

    def _judge_pair(self, request: PairRequest, sample: int, question: _SharedQuestion,
                    abort: threading.Event) -> list[PairResult]:
        first_id, second_id = request.first.image_id, request.second.image_id

        def failed(error: str, raw: str = "") -> list[PairResult]:
            return [PairResult(first_id, second_id, a.key, None, error=error, raw=raw[:RAW_LIMIT], sample=sample)
                    for a in request.aspects]

        try:
            text, parts, error = question.get()
            if error:
                return failed(error)
            answer = self._ask(text, parts, "pair_verdicts", pair_schema(request.aspects), abort)
        finally:
            question.release()
        if answer.error:
            return failed(answer.error, answer.text)
        try:
            verdicts = parse_pair(answer.text, request.aspects)
        except UnreadableAnswer as exc:
            return failed(self._unreadable(exc, answer), answer.text)
        return [PairResult(first_id, second_id, key, choice, rationale=rationale, sample=sample)
                for key, (choice, rationale) in verdicts.items()]

    @staticmethod
    def _unreadable(exc: UnreadableAnswer, answer: _Answer) -> str:
        return f"{exc} (the answer stopped at max_tokens)" if answer.cut_off else str(exc)

    def _image_parts(self, images: Sequence[ImageRef]) -> tuple[list[dict], str]:
        """Data-URL parts for the images in order, or an item error (unreadable, unknown format)."""
        if self.read_bytes is None:
            raise BackendError(f"{self.name}: no read_bytes given to read images with")
        parts = []
        for image in images:
            key = image.storage_key if self._image_source == "original" else image.preview_key
            try:
                data = self.read_bytes(key)
            except Exception as exc:  # storage is a boundary: any failure to read is this item's
                return [], f"cannot read image {key}: {exc.__class__.__name__}: {exc}"
            mime = image_mime(data)
            if mime is None:
                return [], f"image {key} is not JPEG, PNG, WebP or GIF"
            url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
            parts.append({"type": "image_url", "image_url": {"url": url}})
        return parts, ""

    # --- the endpoint -------------------------------------------------------------------------

    def _ask(self, text: str, image_parts: list[dict], schema_name: str, schema: dict,
             abort: threading.Event) -> _Answer:
        payload = {"model": self.model_ref,
                   "messages": [{"role": "user", "content": [{"type": "text", "text": text}, *image_parts]}],
                   "temperature": self._temperature, "max_tokens": self._max_tokens}
        with_format = self._use_response_format
        if with_format:
            payload["response_format"] = {"type": "json_schema",
                                          "json_schema": {"name": schema_name, "strict": True, "schema": schema}}
        status, body = self._post(payload, abort)
        if status == 400 and with_format and "response_format" in body.lower():
            # Some servers lack structured output: ask without it from now on, the prompt still says JSON.
            if self._use_response_format:
                logger.warning("%s: %s rejects response_format; asking without it from now on",
                               self.name, self._redact(self._url))
            self._use_response_format = False
            del payload["response_format"]
            status, body = self._post(payload, abort)
        if not 200 <= status < 300:
            return _Answer(body, error=f"the endpoint refused this item: HTTP {status}: {self._snippet(body)}")
        return self._read_completion(body)

    @staticmethod
    def _read_completion(body: str) -> _Answer:
        try:
            choice = json.loads(body)["choices"][0]
            message = choice["message"]
            content = message.get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return _Answer(body, error="the endpoint's answer is not a chat completion")
        if isinstance(content, list):  # some servers answer in parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            refusal = message.get("refusal")
            if refusal:
                return _Answer(str(refusal), error="the judge refused to answer")
            return _Answer(body, error="the chat completion holds no text")
        return _Answer(content, cut_off=choice.get("finish_reason") == "length")

    def _post(self, payload: dict, abort: threading.Event) -> tuple[int, str]:
        """(status, body) of the first final answer: 2xx or a 4xx other than 429/401/403/404.

        Retries 429, 5xx, timeouts and refused connections up to max_retries times; raises
        BackendError when they persist or on 401/403/404 or a redirect, and _Aborted once `abort`
        is set.
        """
        body = json.dumps(payload).encode()
        url = self._redact(self._url)
        for attempt in range(self._max_retries + 1):
            if abort.is_set():
                raise _Aborted()
            retry_after = None
            try:
                response = self._http.request("POST", self._url, body=body)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                problem = self._redact(f"{exc.__class__.__name__}: {exc}")
            else:
                status, text = response.status, self._redact(response.data.decode("utf-8", "replace"))
                if status in _FINAL_STATUSES or 300 <= status < 400:
                    hint = _FINAL_STATUSES.get(status, "a redirect: check base_url")
                    raise BackendError(f"{url} answered {status} ({hint}; model {self.model_ref!r}): "
                                       f"{self._snippet(text)}")
                if status != 429 and status < 500:
                    return status, text
                problem = f"HTTP {status}: {self._snippet(text)}"
                retry_after = _seconds(response.headers.get("Retry-After"))
            if attempt == self._max_retries:
                break
            delay = min(MAX_BACKOFF_S, self._backoff_s * 2 ** attempt) * random.uniform(0.5, 1.0)
            if retry_after is not None:
                delay = min(retry_after, MAX_RETRY_AFTER_S)
            logger.warning("%s: %s failed (%s); retry %d of %d in %.2fs", self.name, url, problem,
                           attempt + 1, self._max_retries, delay)
            if abort.wait(delay):
                raise _Aborted()
        raise BackendError(f"{url} unreachable or failing after {self._max_retries + 1} attempts: {problem}")

    def _run_all(self, jobs: list, ask: Callable, progress: Progress | None = None) -> list:
        """ask(job, abort) for every job on at most max_concurrency threads; results in job order,
        each job's also given to `progress` (on this thread) as it ends. The first BackendError
        stops the other jobs and is raised."""
        if not jobs:
            return []
        abort = threading.Event()

        def run(job):
            try:
                return ask(job, abort)
            except BaseException:
                abort.set()
                raise

        with ThreadPoolExecutor(max_workers=min(self._max_concurrency, len(jobs)),
                                thread_name_prefix=self.name) as pool:
            futures = [pool.submit(run, job) for job in jobs]
            pending = set(futures)
            while pending and not abort.is_set():
                ended, pending = wait(pending, return_when=FIRST_COMPLETED)
                if progress is not None and not abort.is_set():  # a failed job sets abort before it ends
                    for future in ended:
                        progress(future.result())
            if abort.is_set():
                for future in futures:
                    future.cancel()
                wait(futures)
                errors = [f.exception() for f in futures if not f.cancelled() and f.exception()]
                raise next((e for e in errors if not isinstance(e, _Aborted)), errors[0])
            return [future.result() for future in futures]

    # --- keeping the key out of every text ----------------------------------------------------

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "[JUDGE_API_KEY]") if self._api_key else text

    @staticmethod
    def _snippet(body: str) -> str:
        """The error message of an OpenAI-style error body, else the body's start."""
        try:
            message = json.loads(body)["error"]["message"]
            if isinstance(message, str):
                return message[:300]
        except (ValueError, KeyError, TypeError):
            pass
        return " ".join(body.split())[:300] or "(empty body)"


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: fall back to our own backoff
        return None
