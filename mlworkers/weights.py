"""Where model weights come from, and which device and precision they run in.

A backend's `model_ref` (or a file parameter such as a head) is a local path, an S3 reference
or a Hugging Face Hub reference. An S3 reference is downloaded once per machine into
`settings.MODEL_CACHE_DIR/<sha256 of the reference>/` and read from there afterwards; a Hub
reference goes through `mlworkers.hub` into the same folder, in huggingface_hub's cache layout.
torch is imported inside the functions that need it.
"""
import hashlib
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from mlworkers.backends.base import BackendError


def local_path(model_ref: str, *, hub_files: str = "all") -> Path:
    """A local path for `model_ref`, downloading it first when it is an S3 or a Hub reference.

    - a local file or folder is returned as it is (BackendError "weights not found: <path>" if absent);
    - `s3://bucket/key` is one object, cached as `<cache>/<sha256>/<basename of key>`;
    - `s3://bucket/prefix/` (trailing slash), or a key under which only a folder of objects
      exists, is every object under the prefix, cached as the folder `<cache>/<sha256>/`;
    - a Hub reference (see `mlworkers.hub.parse`: `hf://org/repo[@revision][/path]`, and for the
      backends loading them `hf-hub:org/repo` or a plain `org/repo`) is the file it names, or the
      folder holding the `hub_files` a backend loads from it (`mlworkers.hub.select_files`).

    An S3 download goes to a temporary folder beside the cache entry and is renamed into place,
    so an interrupted download leaves nothing that a later call would take for complete, and
    two processes downloading at once both end up with one complete copy (a Hub download keeps
    the same promise its own way: see `mlworkers.hub`).
    """
    if not model_ref or not model_ref.strip():
        raise BackendError("weights not found: no model reference given")
    if model_ref.startswith("s3://"):
        return _cached_s3(model_ref)
    from mlworkers import hub

    ref = hub.parse(model_ref, files=hub_files)
    if ref is not None:
        return hub.local_copy(ref, files=hub_files)
    path = Path(model_ref).expanduser()
    if not path.exists():
        raise BackendError(f"weights not found: {model_ref}")
    return path


def pick_device() -> str:
    """"cuda" when a CUDA device is usable, else "cpu"."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str | None) -> str:
    """`device` as given, or `pick_device()` for "auto" (also "" or None)."""
    return pick_device() if device in (None, "", "auto") else device


def autocast_dtype(device: str):
    """The dtype scorers run in: bf16 on CUDA where the card supports it, else fp16; fp32 on CPU."""
    import torch

    if str(device).startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


# --- S3 -------------------------------------------------------------------------------------------

def _cached_s3(ref: str) -> Path:
    from django.conf import settings

    bucket, _, key = ref[len("s3://"):].partition("/")
    if not bucket or not key:
        raise BackendError(f"malformed S3 weights reference {ref!r}: expected s3://bucket/key or s3://bucket/prefix/")
    entry = Path(settings.MODEL_CACHE_DIR) / hashlib.sha256(ref.encode()).hexdigest()
    if not entry.is_dir():
        _download_entry(ref, bucket, key, entry)
    if (entry / _FOLDER_MARKER).exists():
        return entry
    return entry / PurePosixPath(key).name


_FOLDER_MARKER = ".s3-prefix"  # written into a cache entry that holds a folder of objects


def _download_entry(ref: str, bucket: str, key: str, entry: Path) -> None:
    from core.s3 import s3_client

    client = s3_client()
    folder, objects = _objects_to_fetch(client, ref, bucket, key)
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
    try:
        for object_key, relative in objects:
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            _download(client, ref, bucket, object_key, target)
        if folder:
            (staging / _FOLDER_MARKER).write_text(ref)
        try:
            os.rename(staging, entry)
        except OSError:
            if not entry.is_dir():  # not another process finishing first: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _objects_to_fetch(client, ref: str, bucket: str, key: str) -> tuple[bool, list[tuple[str, str]]]:
    """Whether `ref` is a folder, and (object key, path inside the cache entry) for what it names."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        prefix = key
        if not key.endswith("/"):
            try:
                client.head_object(Bucket=bucket, Key=key)
                return False, [(key, PurePosixPath(key).name)]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code", "") not in ("404", "NoSuchKey", "NotFound"):
                    raise
            prefix = key + "/"  # no such object: perhaps a folder named without its slash
        found = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                relative = item["Key"][len(prefix):]
                if not relative or relative.endswith("/") or relative.startswith("/") \
                        or ".." in PurePosixPath(relative).parts:
                    continue  # folder markers, and names that would leave the cache entry
                found.append((item["Key"], relative))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            raise BackendError(f"weights not found: {ref} (no bucket {bucket})") from None
        raise BackendError(f"cannot download weights {ref}: {code or exc}") from None
    except BotoCoreError as exc:
        raise BackendError(f"cannot download weights {ref}: {exc}") from None
    if not found:
        raise BackendError(f"weights not found: {ref}")
    return True, found


def _download(client, ref: str, bucket: str, object_key: str, target: Path) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client.download_file(bucket, object_key, str(target))
    except (ClientError, BotoCoreError) as exc:
        raise BackendError(f"cannot download weights {ref}: s3://{bucket}/{object_key}: {exc}") from None
