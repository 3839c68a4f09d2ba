"""Checking image bytes with Pillow and writing them, with a preview, to the configured storage.

Storage is content-addressed (`images/ab/abcdef....png`, `previews/ab/abcdef....webp`), so
writing the same bytes twice is a no-op and an interrupted import leaves nothing that a
rerun would duplicate.
"""
import hashlib
import io
import warnings
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

PREVIEW_FORMAT = "WEBP"
PREVIEW_EXT = "webp"
_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tiff"}


class ImageCheckError(Exception):
    pass


@dataclass(frozen=True)
class StoredImage:
    sha256: str
    storage_key: str
    preview_key: str
    format: str
    width: int
    height: int
    size_bytes: int


def storage_keys(sha256: str, image_format: str) -> tuple[str, str]:
    ext = _EXTENSIONS.get(image_format, image_format.lower())
    return f"images/{sha256[:2]}/{sha256}.{ext}", f"previews/{sha256[:2]}/{sha256}.{PREVIEW_EXT}"


def check_and_store(data: bytes) -> StoredImage:
    """Validate `data` as a complete image within the configured limits, then store the
    original and a preview (long side IMPORT_PREVIEW_LONG_SIDE). Raises ImageCheckError.

    Bytes whose original and preview are already in storage passed these checks when they
    were written (keys are content addresses), so only the header is read again."""
    sha256 = hashlib.sha256(data).hexdigest()
    max_pixels = settings.IMPORT_MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data)) as img:
                fmt = img.format
                width, height = img.size
                if fmt not in settings.IMPORT_ALLOWED_FORMATS:
                    raise ImageCheckError(f"image format {fmt} is not accepted "
                                          f"(accepted: {', '.join(settings.IMPORT_ALLOWED_FORMATS)})")
                if width * height > max_pixels:
                    raise ImageCheckError(f"image is {width}x{height} = {width * height} pixels, "
                                          f"over the {max_pixels}-pixel limit")
                storage_key, preview_key = storage_keys(sha256, fmt)
                stored = StoredImage(sha256=sha256, storage_key=storage_key, preview_key=preview_key, format=fmt,
                                     width=width, height=height, size_bytes=len(data))
                if default_storage.exists(preview_key) and default_storage.exists(storage_key):
                    return stored
                img.load()  # decodes everything: truncated or corrupt data fails here
                preview = _preview_bytes(img)
    except ImageCheckError:
        raise
    except UnidentifiedImageError:
        raise ImageCheckError("not an image Pillow can read (wrong or unknown format)") from None
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise ImageCheckError(f"image refused as a decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageCheckError(f"image data is truncated or corrupt: {exc}") from None

    # The preview goes first: an original without its preview is rewritten on the next try.
    _save_once(preview_key, preview)
    _save_once(storage_key, data)
    return stored


def _preview_bytes(img: PILImage.Image) -> bytes:
    long_side = settings.IMPORT_PREVIEW_LONG_SIDE
    img = ImageOps.exif_transpose(img)
    if img.mode not in ("RGB", "RGBA"):
        img = img.convert("RGBA" if "transparency" in img.info or img.mode in ("LA", "PA") else "RGB")
    img.thumbnail((long_side, long_side), PILImage.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, PREVIEW_FORMAT, quality=88, method=4)
    return out.getvalue()


def _save_once(key: str, data: bytes) -> None:
    if not default_storage.exists(key):
        default_storage.save(key, ContentFile(data))
