"""What MLLM judges are asked and how their answers are read (VisionPrefer-style).

Answers are JSON checked against a schema; anything else (prose, HTML, truncated JSON, a score
off the scale, a missing aspect) is a failure that keeps the raw text, never a score.
"""
import json
import re
from collections.abc import Sequence

from mlworkers.backends.base import Aspect

DEFAULT_SCORE_TEMPLATE = (
    "You are rating an image generated from the prompt: \"{prompt}\".\n"
    "Rate it on each aspect from 1 (worst) to {scale} (best), with one short sentence of rationale each.\n"
    "{aspects}\n"
    "Answer with JSON only, in this shape: {example}"
)
DEFAULT_PAIR_TEMPLATE = (
    "Two images were generated from the prompt: \"{prompt}\". The first image is shown first, the second image second.\n"
    "For each aspect, say which is better: \"first\", \"second\" or \"tie\", with one short sentence of rationale.\n"
    "{aspects}\n"
    "Answer with JSON only, in this shape: {example}"
)


def _aspect_lines(aspects: Sequence[Aspect]) -> str:
    return "\n".join(f"- {a.key}: {a.question or a.label}" for a in aspects)


def score_prompt(template: str, prompt: str, aspects: Sequence[Aspect], scale: int) -> str:
    example = json.dumps({a.key: {"score": scale, "rationale": "..."} for a in aspects})
    return (template or DEFAULT_SCORE_TEMPLATE).format(prompt=prompt, scale=scale, aspects=_aspect_lines(aspects),
                                                        example=example)


def pair_prompt(template: str, prompt: str, aspects: Sequence[Aspect]) -> str:
    example = json.dumps({a.key: {"choice": "first", "rationale": "..."} for a in aspects})
    return (template or DEFAULT_PAIR_TEMPLATE).format(prompt=prompt, aspects=_aspect_lines(aspects), example=example)


def score_schema(aspects: Sequence[Aspect], scale: int) -> dict:
    item = {"type": "object", "additionalProperties": False, "required": ["score", "rationale"],
            "properties": {"score": {"type": "integer", "minimum": 1, "maximum": scale},
                           "rationale": {"type": "string"}}}
    return {"type": "object", "additionalProperties": False, "required": [a.key for a in aspects],
            "properties": {a.key: item for a in aspects}}


def pair_schema(aspects: Sequence[Aspect]) -> dict:
    item = {"type": "object", "additionalProperties": False, "required": ["choice", "rationale"],
            "properties": {"choice": {"type": "string", "enum": ["first", "second", "tie"]},
                           "rationale": {"type": "string"}}}
    return {"type": "object", "additionalProperties": False, "required": [a.key for a in aspects],
            "properties": {a.key: item for a in aspects}}


class UnreadableAnswer(ValueError):
    """The judge's text is not an answer of the asked shape; the message says what is wrong."""


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def _load_object(text: str) -> dict:
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:  # a fenced block holding nothing but JSON is still an answer
        stripped = fenced.group(1)
    try:
        value = json.loads(stripped)
    except ValueError as exc:
        raise UnreadableAnswer(f"not JSON ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(value, dict):
        raise UnreadableAnswer("the answer is JSON but not an object")
    return value


def _aspect_entries(text: str, aspects: Sequence[Aspect]):
    """(aspect, its entry, its rationale) for each asked aspect, or UnreadableAnswer."""
    answer = _load_object(text)
    for aspect in aspects:
        entry = answer.get(aspect.key)
        if not isinstance(entry, dict):
            raise UnreadableAnswer(f"no entry for aspect {aspect.key!r}")
        rationale = entry.get("rationale", "")
        if not isinstance(rationale, str):
            raise UnreadableAnswer(f"{aspect.key}: rationale is not text")
        yield aspect, entry, rationale.strip()[:2000]


def parse_scores(text: str, aspects: Sequence[Aspect], scale: int) -> dict[str, tuple[int, str]]:
    """{aspect: (score, rationale)} from a judge's answer, or UnreadableAnswer."""
    out = {}
    for aspect, entry, rationale in _aspect_entries(text, aspects):
        score = entry.get("score")
        if isinstance(score, bool) or not isinstance(score, int):
            raise UnreadableAnswer(f"{aspect.key}: score {score!r} is not a whole number")
        if not 1 <= score <= scale:
            raise UnreadableAnswer(f"{aspect.key}: score {score} is outside 1..{scale}")
        out[aspect.key] = (score, rationale)
    return out


def parse_pair(text: str, aspects: Sequence[Aspect]) -> dict[str, tuple[str, str]]:
    """{aspect: (first|second|tie, rationale)} from a judge's answer, or UnreadableAnswer."""
    out = {}
    for aspect, entry, rationale in _aspect_entries(text, aspects):
        choice = entry.get("choice")
        if choice not in ("first", "second", "tie"):
            raise UnreadableAnswer(f"{aspect.key}: choice {choice!r} is not first, second or tie")
        out[aspect.key] = (choice, rationale)
    return out
