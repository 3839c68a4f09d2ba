"""The interface every machine judge implements, and the registry of backends by name.

A backend scores a prompt's images per aspect, judges a pair shown in a given order, or both.
It returns one typed result per asked item: a value (with a rationale where the judge gives
one) or a failure holding the judge's raw text. A pair may be asked several times (samples of
a judge that samples, for self-consistency); each answer is its own item, tagged with its index. Backends never touch the database; the job
runner in `mlworkers.runner` feeds them and writes what they return.
"""
import importlib.util
from abc import ABC
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal


@dataclass(frozen=True)
class Aspect:
    key: str
    label: str
    question: str = ""


@dataclass(frozen=True)
class ImageRef:
    image_id: int
    preview_key: str  # model-sized rendition in storage (what CLIP-family scorers read)
    storage_key: str  # the original (what full-resolution judges read)


@dataclass(frozen=True)
class ScoreRequest:
    """Score every image of one prompt on every aspect, on a 1..scale scale where the judge has one."""

    prompt: str
    images: Sequence[ImageRef]
    aspects: Sequence[Aspect]
    scale: int


@dataclass(frozen=True)
class PairRequest:
    """Which of two images of one prompt is better, per aspect, shown `first` then `second`.

    `samples` are the sample indices to answer: one independent answer per index (k indices,
    k answers; a resumed job asks only the indices it lacks)."""

    prompt: str
    first: ImageRef
    second: ImageRef
    aspects: Sequence[Aspect]
    samples: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class ScoreResult:
    image_id: int
    aspect: str
    value: float | None  # None when failed
    rationale: str = ""
    error: str = ""
    raw: str = ""

    @property
    def failed(self) -> bool:
        return self.value is None


@dataclass(frozen=True)
class PairResult:
    first_id: int
    second_id: int
    aspect: str
    choice: Literal["first", "second", "tie"] | None  # None when failed
    rationale: str = ""
    error: str = ""
    raw: str = ""
    sample: int = 0

    @property
    def failed(self) -> bool:
        return self.choice is None


class BackendError(Exception):
    """The backend cannot run at all (weights missing or of the wrong shape, endpoint down...)."""


class BackendUnavailable(BackendError):
    """This worker's Python lacks the packages the backend needs (an extra was not installed)."""


ReadBytes = Callable[[str], bytes]  # storage key -> bytes
# Called by `score` / `judge_pairs`, as answers come, with the results of whole items (every aspect
# of an image, or of a pair's order and sample): the job runner counts them while a chunk runs. The
# list returned at the end is still the whole answer; a backend may also report nothing.
Progress = Callable[[Sequence["ScoreResult | PairResult"]], None]


@dataclass
class Backend(ABC):
    """Built once per worker process and kept (loading a model is the expensive part)."""

    model_ref: str
    parameters: dict = field(default_factory=dict)
    prompt_template: str = ""
    read_bytes: ReadBytes | None = None
    device: str = "cpu"

    name: ClassVar[str] = ""
    can_score: ClassVar[bool] = False
    can_judge_pairs: ClassVar[bool] = False
    # Top-level modules the backend imports beyond the base install, and the extra providing them.
    requires: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str] = ""
    # The parameters it takes. What `model_ref` names: weights it loads, and which of a Hub repo's
    # files ("open_clip", "transformers"; see mlworkers.hub), or "" for a model served elsewhere.
    # Parameters naming weights files too, with the Hub files each loads.
    parameter_names: ClassVar[tuple[str, ...]] = ()
    weights: ClassVar[str] = ""
    reference_parameters: ClassVar[tuple[tuple[str, str], ...]] = ()

    @classmethod
    def missing_modules(cls) -> list[str]:
        """The modules of `requires` this Python cannot import (nothing is imported to tell)."""
        missing = []
        for module in cls.requires:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):  # a finder that blocks the name; a half-imported module
                found = False
            if not found:
                missing.append(module)
        return missing

    @classmethod
    def ensure_available(cls) -> None:
        """Raise BackendUnavailable, naming the extra to install, when a required module is missing."""
        missing = cls.missing_modules()
        if missing:
            raise BackendUnavailable(
                f"this worker lacks the `{cls.extra}` extra ({', '.join(missing)}) needed by backend {cls.name}: "
                f"install prefstudio[{cls.extra}] on the worker that serves the gpu queue")

    @classmethod
    def check_parameters(cls, parameters: dict) -> None:
        """BackendError naming what no job of this backend could run with: a parameter it does not
        take, or a value it refuses. Loads nothing (an annotator is checked when it is saved)."""
        unknown = sorted(set(parameters) - set(cls.parameter_names))
        if unknown:
            takes = ", ".join(cls.parameter_names) or "none"
            raise BackendError(f"{cls.name} does not take the parameter{'s' if len(unknown) > 1 else ''} "
                               f"{', '.join(unknown)}; it takes: {takes}")

    def parameters_with_defaults(self, defaults: dict) -> dict:
        """`self.parameters` over `defaults`; a name not in `defaults` (a typo) is a BackendError."""
        unknown = sorted(set(self.parameters) - set(defaults))
        if unknown:
            raise BackendError(f"{self.name}: unknown parameters {', '.join(unknown)}; known: {', '.join(defaults)}")
        return {**defaults, **self.parameters}

    @classmethod
    def sampling_refusal(cls, parameters: dict) -> str:
        """Why asking this judge, so configured, the same pair several times would not give
        independent samples; "" when it would. Backends that sample override this."""
        return f"backend {cls.name} gives the same answer every time; it cannot sample"

    @classmethod
    def scored_aspect(cls, parameters: dict) -> str | None:
        """The one aspect this backend, so configured, scores whatever a score job asks (the
        CLIP-family scorers give one number per image); None for a judge that answers each
        aspect it is asked. Backends that score one aspect override this."""
        return None

    def score(self, requests: Sequence[ScoreRequest], progress: Progress | None = None) -> list[ScoreResult]:
        raise NotImplementedError(f"{self.name} does not score images")

    def judge_pairs(self, requests: Sequence[PairRequest], progress: Progress | None = None) -> list[PairResult]:
        raise NotImplementedError(f"{self.name} does not judge pairs")


_REGISTRY: dict[str, type[Backend]] = {}


def register(cls: type[Backend]) -> type[Backend]:
    if not cls.name or cls.name in _REGISTRY:
        raise ValueError(f"backend name {cls.name!r} is empty or taken")
    _REGISTRY[cls.name] = cls
    return cls


def backend_class(name: str) -> type[Backend]:
    from mlworkers.backends import load_all

    load_all()
    if name not in _REGISTRY:
        raise BackendError(f"unknown backend {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def backend_names() -> list[str]:
    from mlworkers.backends import load_all

    load_all()
    return sorted(_REGISTRY)
