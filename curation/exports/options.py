"""What an export may be asked for: formats, containers, destinations and each format's options,
with their defaults and checks. A bad value raises a ValidationError that names the field."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from urllib.parse import urlparse

from django.core.exceptions import ValidationError

FORMATS = ("pickapic", "visionprefer", "pamela", "trl")
CONTAINERS = ("parquet", "jsonl", "webdataset")


@dataclass(frozen=True)
class ExportOptions:
    aspect: str = "overall"  # pickapic, trl: the aspect whose judgments / filter run verdicts are exported
    images: str = "embed"  # embed (image bytes in the dataset) or reference (uids and storage URLs only)
    image_max_side: int | None = None  # re-encode embedded images as JPEG with this long side; None keeps originals
    rows: str = "consensus"  # pickapic: one row per consensus pair, or per human "judgments"
    source: str = "human"  # visionprefer: "human" (mean human score) or a machine annotator's name
    aspects: list[str] | None = None  # visionprefer: the aspects exported (None: all of the project's)
    unseen_people: float | list[str] = 0.1  # pamela: share of people held out, or their pseudonyms
    unseen_images: float | list[str] = 0.1  # pamela: share of images held out, or their uids (sha256)
    seed: int = 0  # pamela: which people / images a share holds out
    rows_per_shard: int | None = None  # None: 2,000 with embedded images, 1,000,000 with references
    row_group_rows: int | None = None  # None: 200 with embedded images, 100,000 with references
    license: str = "other"  # the dataset card's licence field

    @classmethod
    def from_json(cls, data: dict | None, *, export_format: str) -> "ExportOptions":
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValidationError({"options": f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"})
        options = cls(**data)
        options.check(export_format=export_format)
        return options

    def check(self, *, export_format: str) -> None:
        def bad(name, why):
            raise ValidationError({"options": f"{name}: {why} (got {getattr(self, name)!r})"})

        if self.images not in ("embed", "reference"):
            bad("images", "must be embed or reference")
        if self.rows not in ("consensus", "judgments"):
            bad("rows", "must be consensus or judgments")
        if self.image_max_side is not None and (not _whole(self.image_max_side) or not 16 <= self.image_max_side <= 8192):
            bad("image_max_side", "must be a whole number from 16 to 8192, or null")
        for name in ("rows_per_shard", "row_group_rows"):
            value = getattr(self, name)
            if value is not None and (not _whole(value) or value < 1):
                bad(name, "must be a whole number of at least 1, or null")
        for name in ("unseen_people", "unseen_images"):
            value = getattr(self, name)
            if isinstance(value, list):
                if not all(isinstance(v, str) for v in value):
                    bad(name, "a list must hold strings")
            elif not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
                bad(name, "must be a share from 0 (inclusive) to 1 (exclusive), or a list")
        if not _whole(self.seed):
            bad("seed", "must be a whole number")
        if not isinstance(self.aspect, str) or not self.aspect:
            bad("aspect", "must be an aspect key")
        if self.aspects is not None and (not isinstance(self.aspects, list) or not self.aspects
                                         or not all(isinstance(a, str) for a in self.aspects)):
            bad("aspects", "must be a non-empty list of aspect keys, or null")
        if not isinstance(self.source, str) or not self.source:
            bad("source", "must be human or a machine annotator's name")
        if not isinstance(self.license, str) or not self.license:
            bad("license", "must be a licence identifier such as cc-by-4.0 or other")

    @property
    def embed(self) -> bool:
        return self.images == "embed"

    @property
    def shard_rows(self) -> int:
        return self.rows_per_shard or (2_000 if self.embed else 1_000_000)

    @property
    def group_rows(self) -> int:
        return self.row_group_rows or (200 if self.embed else 100_000)

    def as_json(self) -> dict:
        return asdict(self)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Destination:
    """A local folder (`path`) or an S3 prefix (`bucket`, `prefix`)."""

    raw: str
    bucket: str = ""
    prefix: str = ""
    path: str = ""

    @property
    def is_s3(self) -> bool:
        return bool(self.bucket)

    def key(self, relative: str) -> str:
        """The S3 key of a file of the dataset, under the prefix."""
        return f"{self.prefix}/{relative}" if self.prefix else relative


def destination_parse(raw: str) -> Destination:
    raw = (raw or "").strip()
    if not raw:
        raise ValidationError({"destination": "give a local folder or s3://bucket/prefix"})
    if raw.startswith("s3://"):
        parsed = urlparse(raw)
        if not parsed.netloc:
            raise ValidationError({"destination": f"{raw!r} names no bucket (expected s3://bucket/prefix)"})
        return Destination(raw=raw, bucket=parsed.netloc, prefix=parsed.path.strip("/"))
    if "://" in raw:
        raise ValidationError({"destination": f"{raw!r}: only local folders and s3:// are supported"})
    return Destination(raw=raw, path=raw)
