"""Models on the Hugging Face Hub: references to them, the commit a reference names, and their
download into `settings.MODEL_CACHE_DIR`.

A reference is `hf://org/repo[@revision][/path/in/repo]`. Open_clip's `hf-hub:org/repo` names the
same for open_clip backends, and a plain `org/repo` does for transformers backends when no local
path of that name exists. A machine annotator records the commit each of its references resolved
to (`MachineAnnotator.model_commits`, part of its version) and workers are handed references
pinned to it (`hf://org/repo@<sha>`), so a branch that moves never changes what a version runs.

Files are fetched one by one with huggingface_hub's `hf_hub_download` into its cache layout under
MODEL_CACHE_DIR: a lock per file, a temporary file checked for size and renamed into place. A
download counts as complete only once a record of the files it needed is written (atomically)
under `MODEL_CACHE_DIR/hub-downloads/`: one that stopped half way leaves no record, so neither a
later run nor offline mode takes it for complete, and a retry fetches what is missing.

`HF_ENDPOINT`, `HF_HUB_OFFLINE` and `HF_TOKEN` are read from the environment when used (not when
huggingface_hub was imported). The token is scrubbed from every message raised here.
huggingface_hub is imported inside the functions.
"""
import hashlib
import json
import os
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from mlworkers.backends.base import BackendError

HF_SCHEME = "hf://"
OPEN_CLIP_SCHEME = "hf-hub:"
DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_REVISION = "main"
HUB_TIMEOUT_S = 5.0  # asking the Hub about a repo: an unreachable Hub fails this fast
COMMIT = re.compile(r"[0-9a-f]{40}")

# What a backend loads from a repo (or a folder of one); a path naming one file is that file.
FILES_ALL = "all"
FILES_OPEN_CLIP = "open_clip"  # open_clip_config.json and one checkpoint
FILES_TRANSFORMERS = "transformers"  # configs, tokenizer, processor and PyTorch weights (safetensors first)
FILES_PROCESSOR = "processor"  # transformers' files without any weights
FILES_FILE = "file"  # the path must name one file
PLAIN_ID_FILES = (FILES_TRANSFORMERS, FILES_PROCESSOR)  # from_pretrained takes plain `org/repo` names

_REVISION = r"refs/pr/\d+|refs/convert/[\w.-]+|[\w.-]+"
_BODY = re.compile(rf"(?P<repo>[^/@]+/[^/@]+)(?:@(?P<revision>{_REVISION}))?(?:/(?P<path>.*))?")
_PLAIN_ID = re.compile(r"[\w.-]+/[\w.-]+")
_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
_OTHER_FRAMEWORKS = (".h5", ".msgpack", ".onnx", ".onnx_data", ".tflite", ".ot", ".gguf", ".mlmodel", ".pb",
                     ".keras")
_OTHER_FOLDERS = {"onnx", "openvino", "coreml", "tf", "flax", "tflite"}
_NOT_NEEDED = {".gitattributes", "README.md"}


class MalformedHubRef(BackendError):
    """A Hub reference that is not well formed."""


class HubUnreachable(BackendError):
    """The Hub could not be asked (down, blocked, timed out): asking later may work."""


class HubOffline(HubUnreachable):
    """HF_HUB_OFFLINE is set and the cache does not hold what was asked for."""


@dataclass(frozen=True)
class HubRef:
    repo_id: str
    revision: str = ""  # "" for the repo's default branch
    path: str = ""  # a file or folder in the repo; "" for its root
    text: str = field(default="", compare=False)  # as the user wrote it

    def __str__(self):
        return self.text or self.canonical

    @property
    def canonical(self) -> str:
        return (f"{HF_SCHEME}{self.repo_id}" + (f"@{self.revision}" if self.revision else "")
                + (f"/{self.path}" if self.path else ""))

    @property
    def commit(self) -> str:
        """The revision when it is a commit sha (nothing to resolve), else ""."""
        return self.revision if COMMIT.fullmatch(self.revision) else ""

    def pinned(self, commit: str) -> str:
        """This reference at `commit`: `hf://org/repo@<sha>[/path]`."""
        return f"{HF_SCHEME}{self.repo_id}@{commit}" + (f"/{self.path}" if self.path else "")


# --- references ------------------------------------------------------------------------------------

def parse(text: str, *, files: str, local_first: bool = True) -> HubRef | None:
    """The Hub reference `text` is, for a backend loading `files` from it; None when it is none
    (a local path, an s3:// key). `hf://` always is one; `hf-hub:` is for open_clip backends; a
    plain `org/repo` is for transformers backends, unless (with `local_first`) a local path of
    that name exists. MalformedHubRef says what is wrong with one that is not well formed."""
    text = text.strip()
    if text.startswith(HF_SCHEME):
        body = text[len(HF_SCHEME):]
    elif text.startswith(OPEN_CLIP_SCHEME):
        body = text[len(OPEN_CLIP_SCHEME):]
        if files != FILES_OPEN_CLIP:
            raise MalformedHubRef(f"{text!r}: hf-hub: names are open_clip's; write {HF_SCHEME}{body}")
    elif files in PLAIN_ID_FILES and _PLAIN_ID.fullmatch(text) and _valid_repo_id(text) \
            and not (local_first and path_exists(text)):
        return HubRef(repo_id=text, text=text)
    else:
        return None
    match = _BODY.fullmatch(body)
    if match is None or not _valid_repo_id(match["repo"]):
        raise MalformedHubRef(f"malformed Hub reference {text!r}: expected "
                              f"{HF_SCHEME}org/repo[@revision][/path/in/repo]")
    path = (match["path"] or "").rstrip("/")
    if match["path"] and (not path or "\\" in path or any(part in ("", ".", "..") for part in path.split("/"))):
        raise MalformedHubRef(f"malformed Hub reference {text!r}: {match['path']!r} is not a path in a repo")
    return HubRef(repo_id=match["repo"], revision=match["revision"] or "", path=path, text=text)


def path_exists(text: str) -> bool:
    """Whether a local file or folder `text` exists (False for what cannot be a path at all)."""
    try:
        return Path(text).expanduser().exists()
    except (OSError, RuntimeError, ValueError):  # a name too long; ~user with no such user; a NUL byte
        return False


def _valid_repo_id(repo_id: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return False
    return True


# --- the environment -------------------------------------------------------------------------------

def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _token() -> str | None:
    return os.environ.get("HF_TOKEN") or None


def scrub(text: str) -> str:
    """`text` without any Hub token this process could send."""
    tokens = {_token()}
    try:
        from huggingface_hub import get_token

        tokens.add(get_token())
    except Exception:  # noqa: BLE001 - no token file, an OIDC exchange that fails: nothing to scrub
        pass
    for token in filter(None, tokens):
        text = text.replace(token, "***")
    return text


def _cache_dir() -> Path:
    from django.conf import settings

    return Path(settings.MODEL_CACHE_DIR).expanduser().resolve()


# --- asking the Hub --------------------------------------------------------------------------------

def resolve_commit(ref: HubRef) -> str:
    """The commit `ref` names, asked of the Hub (a commit sha too: the Hub says whether it has it).
    With HF_HUB_OFFLINE, a sha is taken as it is and a branch or tag is read from the cache's
    `refs/` (written by huggingface_hub's own downloads), else HubOffline. HubUnreachable when the
    Hub cannot be asked; BackendError naming the reason when it refuses or lacks the repo."""
    if offline():
        commit = ref.commit or _cached_ref(ref)
        if not commit:
            raise HubOffline(f"HF_HUB_OFFLINE is set and {ref} is not in the cache")
        return commit
    return _model_info(ref, ref.revision or None)[0]


def _cached_ref(ref: HubRef) -> str:
    path = _storage(ref) / "refs" / (ref.revision or DEFAULT_REVISION)
    try:
        commit = path.read_text().strip()
    except OSError:
        return ""
    return commit if COMMIT.fullmatch(commit) else ""


def _model_info(ref: HubRef, revision: str | None) -> tuple[str, list[str]]:
    """(commit, the repo's file names) at `revision`, in one question to the Hub."""
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=endpoint(), token=_token()).model_info(ref.repo_id, revision=revision,
                                                                     timeout=HUB_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - the Hub is a boundary: every failure is told by its kind
        raise hub_error(exc, ref) from None
    if not info.sha or not COMMIT.fullmatch(info.sha):
        raise BackendError(f"the model hub at {endpoint()} gave no commit for {ref}")
    return info.sha, [sibling.rfilename for sibling in info.siblings or ()]


def hub_error(exc: Exception, ref: HubRef | str) -> BackendError:
    """A BackendError telling why the Hub did not give `ref`, without the token."""
    from huggingface_hub.errors import (
        EntryNotFoundError, GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled,
        RepositoryNotFoundError, RevisionNotFoundError,
    )

    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, OfflineModeIsEnabled):
        return HubOffline(f"HF_HUB_OFFLINE is set and {ref} is not in the cache")
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(exc, HfHubHTTPError) and status is not None:
        if status in (401, 403) or isinstance(exc, GatedRepoError):
            unknown = response.headers.get("X-Error-Code") == "RepoNotFound"
            return BackendError(f"{ref} needs a token (HF_TOKEN) or the token has no access"
                                + (" (or there is no such repo)" if unknown else "")
                                + f": the model hub answered {status}")
        if status == 404 or isinstance(exc, (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError)):
            return BackendError(f"no such model repo or revision on the hub: {ref}")
        if status >= 500 or status in (408, 429):
            return HubUnreachable(f"model hub unreachable: {endpoint()}: it answered {status}")
        return BackendError(scrub(f"the model hub refused {ref}: {status} {_first_line(exc)}"))
    if isinstance(exc, LocalEntryNotFoundError) and exc.__cause__ is not None:
        exc = exc.__cause__
    return HubUnreachable(scrub(f"model hub unreachable: {endpoint()}: {type(exc).__name__}: {_first_line(exc)}"))


def _first_line(exc: BaseException) -> str:
    line = next((line.strip() for line in str(exc).splitlines() if line.strip()), "no message")
    return line if len(line) <= 300 else line[:297] + "..."


# --- downloading -----------------------------------------------------------------------------------

def local_copy(ref: HubRef, *, files: str) -> Path:
    """The local path of what `ref` names (a file, or a folder holding the `files` a backend
    loads), downloaded first unless a complete download of it is in the cache. With HF_HUB_OFFLINE
    only the cache is read (HubOffline when it lacks it). BackendError subclasses tell why the Hub
    did not give it."""
    from huggingface_hub import hf_hub_download

    commit = ref.commit or resolve_commit(ref)
    snapshot = _storage(ref) / "snapshots" / commit
    record = _cache_dir() / "hub-downloads" / _storage(ref).name / commit / f"{_record_key(ref.path, files)}.json"
    listed = _read_record(record)
    if listed is not None and all((snapshot / name).is_file() for name in listed):
        return snapshot / ref.path
    if offline():
        raise HubOffline(f"HF_HUB_OFFLINE is set and {ref} is not in the cache")
    _, names = _model_info(ref, commit)
    wanted = select_files(names, ref.path, files)
    if not wanted:
        where = f"{ref.path!r} in {ref.repo_id}" if ref.path else ref.repo_id
        raise BackendError(f"{ref}: nothing to load at {where}@{commit[:12]} "
                           f"({'not a file' if files == FILES_FILE else 'no ' + files + ' files there'})")

    def fetch(name):
        try:
            return hf_hub_download(ref.repo_id, name, revision=commit, cache_dir=str(_cache_dir()),
                                   endpoint=endpoint(), token=_token(), etag_timeout=HUB_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - told by its kind, as above
            raise hub_error(exc, ref) from None

    with ThreadPoolExecutor(max_workers=min(8, len(wanted))) as pool:
        list(pool.map(fetch, wanted))  # the first failure is raised; the files fetched stay cached
    _write_record(record, wanted)
    return snapshot / ref.path


def _storage(ref: HubRef) -> Path:
    from huggingface_hub.file_download import repo_folder_name

    return _cache_dir() / repo_folder_name(repo_id=ref.repo_id, repo_type="model")


def _record_key(path: str, files: str) -> str:
    return hashlib.sha256(f"{path}\n{files}".encode()).hexdigest()[:16]


def _read_record(record: Path) -> list[str] | None:
    try:
        names = json.loads(record.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return names if isinstance(names, list) and names else None


def _write_record(record: Path, names: list[str]) -> None:
    record.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{record.name}-", dir=record.parent)
    try:
        with os.fdopen(handle, "w") as out:
            json.dump({"files": sorted(names)}, out)
        os.replace(staging, record)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)


def select_files(names: list[str], path: str, files: str) -> list[str]:
    """The repo files (of `names`) a backend loading `files` needs from `path`: the file itself
    when `path` names one; else, under the folder `path`, open_clip's config and its first
    checkpoint (OPEN_CLIP_CHECKPOINTS order), or transformers' files (PyTorch weights only,
    safetensors over pickles; none for a processor), or everything."""
    if path and path in names:
        return [path]
    if files == FILES_FILE:
        return []
    prefix = f"{path}/" if path else ""
    inside = {name[len(prefix):]: name for name in names if name.startswith(prefix)}
    if files == FILES_ALL:
        return sorted(inside.values())
    if files == FILES_OPEN_CLIP:
        from mlworkers.backends.clip_models import OPEN_CLIP_CHECKPOINTS, OPEN_CLIP_CONFIG

        checkpoint = next((inside[name] for name in OPEN_CLIP_CHECKPOINTS if name in inside), None)
        return ([inside[OPEN_CLIP_CONFIG]] if OPEN_CLIP_CONFIG in inside else []) + ([checkpoint] if checkpoint else [])
    kept = {relative: name for relative, name in inside.items() if _transformers_file(relative)}
    has_safetensors = any(relative.endswith(".safetensors") for relative in kept)
    chosen = []
    for relative, name in kept.items():
        weights = relative.endswith(_WEIGHTS) or relative.endswith((".safetensors.index.json", ".bin.index.json"))
        if weights and (files == FILES_PROCESSOR or (has_safetensors and "safetensors" not in relative)):
            continue
        chosen.append(name)
    return sorted(chosen)


def _transformers_file(relative: str) -> bool:
    parts = relative.split("/")
    return not (relative in _NOT_NEEDED or parts[-1].startswith("open_clip_") or relative.endswith(_OTHER_FRAMEWORKS)
                or parts[0] in _OTHER_FOLDERS)
