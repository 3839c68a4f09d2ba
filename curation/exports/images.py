"""Image bytes and URLs for exports, read from the project's storage (local files or S3)."""
from __future__ import annotations

import io
import re
from collections import OrderedDict
from pathlib import Path
from urllib.parse import quote

from django.core.files.storage import default_storage
from PIL import Image as PILImage

from curation.exports.errors import ExportError

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_./-]+")
_SIGNATURES = ((b"\xff\xd8\xff", "jpg"), (b"\x89PNG", "png"), (b"GIF8", "gif"), (b"BM", "bmp"),
               (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"))


def image_extension(data: bytes) -> str:
    """The file extension of encoded image bytes, from their signature."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for signature, ext in _SIGNATURES:
        if data.startswith(signature):
            return ext
    return "bin"


class ImageSource:
    """Reads stored originals by key, keeping the last few (a prompt's images recur in its pairs),
    and optionally re-encodes them as JPEG no longer than `max_side` on their long side, which is
    deterministic for a given Pillow build."""

    def __init__(self, *, max_side: int | None = None, cache_size: int = 64):
        self.max_side = max_side
        self.cache_size = cache_size
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._root = _local_root()
        bucket = getattr(default_storage, "bucket_name", None)
        location = (getattr(default_storage, "location", "") or "").strip("/")
        if bucket:
            self._url_prefix = f"s3://{bucket}/{location + '/' if location else ''}"
        else:
            self._url_prefix = self._root.as_uri().rstrip("/") + "/"

    def read(self, key: str, *, uid: str = "") -> bytes:
        data = self._cache.get(key)
        if data is not None:
            self._cache.move_to_end(key)
            return data
        data = self._read_stored(key, uid)
        if self.max_side:
            data = self._reencode(data)
        self._cache[key] = data
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return data

    def url(self, key: str) -> str:
        """Where the original lies: s3://bucket/key on S3, file:///absolute/path on local storage."""
        # Keys are content addresses (hex, slashes, a dot): nothing in them needs quoting.
        return self._url_prefix + (key if _PLAIN_KEY.fullmatch(key) else quote(key))

    def _read_stored(self, key: str, uid: str) -> bytes:
        try:
            if self._root is not None:
                return (self._root / key).read_bytes()
            with default_storage.open(key, "rb") as handle:
                return handle.read()
        except (FileNotFoundError, OSError) as exc:
            raise ExportError(f"image {uid or key} is missing from storage (key {key}): "
                              f"{exc.__class__.__name__}") from exc
        except Exception as exc:  # botocore's ClientError for a missing S3 object
            code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
            if code in ("404", "NoSuchKey", "NotFound"):
                raise ExportError(f"image {uid or key} is missing from storage (key {key})") from exc
            raise

    def _reencode(self, data: bytes) -> bytes:
        with PILImage.open(io.BytesIO(data)) as img:
            img = img.convert("RGB")
            img.thumbnail((self.max_side, self.max_side), PILImage.Resampling.LANCZOS)
            out = io.BytesIO()
            img.save(out, format="JPEG", quality=90, optimize=False, progressive=False)
        return out.getvalue()


def _local_root() -> Path | None:
    try:
        return Path(default_storage.path(""))
    except NotImplementedError:
        return None
