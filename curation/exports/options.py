"""What an export may be asked for: formats, containers, destinations and each format's options,
with their defaults and checks (ExportOptionsSerializer, which also types them in the API's
schema). A bad value raises a ValidationError that names the field."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from urllib.parse import urlparse

from django.core.exceptions import ValidationError

from curation.json_fields import (
    ChoiceOfField,
    JsonObjectSerializer,
    ShareOrNamesField,
    TextField,
    TextListField,
    WholeNumberField,
    checked_json,
)

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
        """The options `data` asks for, defaults filled in. Raises ValidationError({"options": ...})
        naming each refused option (ExportOptionsSerializer's checks) or unknown key. What a
        format needs of the project is checked by the export services."""
        return cls(**checked_json(ExportOptionsSerializer, data, key="options"))

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


def _default(name: str):
    return getattr(ExportOptions, name)


_WHOLE_OR_NULL = "must be a whole number of at least 1, or null"


class ExportOptionsSerializer(JsonObjectSerializer):
    """Each format's options; every key is optional, and a format reads only the ones it names."""

    noun = "option"

    aspect = TextField(default=_default("aspect"), why="must be an aspect key",
                       help_text="pickapic, trl: the aspect whose judgments or filter run verdicts are exported.")
    images = ChoiceOfField(choices=["embed", "reference"], default=_default("images"),
                           why="must be embed or reference",
                           help_text="embed: image bytes in the dataset; reference: uids and storage URLs only.")
    image_max_side = WholeNumberField(
        min_value=16, max_value=8192, allow_null=True, default=_default("image_max_side"),
        why="must be a whole number from 16 to 8192, or null",
        help_text="Re-encode embedded images as JPEG with this long side; null keeps the original bytes.")
    rows = ChoiceOfField(choices=["consensus", "judgments"], default=_default("rows"),
                         why="must be consensus or judgments",
                         help_text="pickapic: one row per pair a filter run kept (consensus), or per live human "
                                   "judgment (judgments).")
    source = TextField(default=_default("source"), why="must be human or a machine annotator's name",
                       help_text="visionprefer: human (mean live human score) or a machine annotator's name.")
    aspects = TextListField(allow_empty=False, allow_null=True, default=_default("aspects"),
                            why="must be a non-empty list of aspect keys, or null",
                            help_text="visionprefer: the aspects exported; null: all of the project's.")
    unseen_people = ShareOrNamesField(default=_default("unseen_people"),
                                      help_text="pamela: share of people held out as unseen, from 0 (inclusive) to 1 "
                                                "(exclusive), or a list of their pseudonyms.")
    unseen_images = ShareOrNamesField(default=_default("unseen_images"),
                                      help_text="pamela: share of images held out, from 0 (inclusive) to 1 "
                                                "(exclusive), or a list of their uids (sha256).")
    seed = WholeNumberField(default=_default("seed"), why="must be a whole number",
                            help_text="pamela: which people and images a share holds out.")
    rows_per_shard = WholeNumberField(
        min_value=1, allow_null=True, default=_default("rows_per_shard"), why=_WHOLE_OR_NULL,
        help_text="Rows per shard; null: 2,000 with embedded images, 1,000,000 with references.")
    row_group_rows = WholeNumberField(
        min_value=1, allow_null=True, default=_default("row_group_rows"), why=_WHOLE_OR_NULL,
        help_text="Rows per Parquet row group; null: 200 with embedded images, 100,000 with references.")
    license = TextField(default=_default("license"), why="must be a licence identifier such as cc-by-4.0 or other",
                        help_text="The dataset card's licence field, such as cc-by-4.0; other by default.")


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
