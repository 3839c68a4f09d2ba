"""The tables an export writes: each format describes its (config, split) tables as columns plus
image columns, and yields plain column batches holding storage keys; `assemble` turns a batch into
an Arrow record batch with image bytes (or only their URLs) and the Hugging Face feature types.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa

from curation.exports.images import ImageSource

HF_IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
TIMESTAMP = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class ImageColumn:
    """An image column: `name` holds the bytes (raw `binary`, as Pick-a-Pic stores them, or an HF
    `Image` feature), `url` its storage URL; the batch carries the storage key under `key` and the
    uid under `uid`. `many`: a list of images per row."""

    name: str
    key: str
    uid: str
    url: str
    feature: str = "binary"  # or "image"
    many: bool = False

    @property
    def arrow_type(self) -> pa.DataType:
        single = HF_IMAGE if self.feature == "image" else pa.binary()
        return pa.list_(single) if self.many else single

    @property
    def url_type(self) -> pa.DataType:
        return pa.list_(pa.string()) if self.many else pa.string()


Batch = dict[str, list]


@dataclass
class Table:
    """One (config, split) of a dataset. `fields` are the output columns in order, image columns
    among them by name; `batches()` yields column lists (ordered rows, deterministic)."""

    config: str
    split: str
    fields: list[tuple[str, pa.DataType]]
    images: tuple[ImageColumn, ...]
    count: int
    batches: Callable[[], Iterator[Batch]]
    description: dict[str, str] | None = None  # column -> what it holds, for the dataset card
    notes: tuple[str, ...] = ()  # how the dataset was made, for the card, manifest and export message

    def schema(self, *, embed: bool) -> pa.Schema:
        image_columns = {c.name: c for c in self.images}
        url_names = {c.url: c for c in self.images}
        out = []
        for name, dtype in self.fields:
            if name in image_columns:
                if embed:
                    out.append(pa.field(name, image_columns[name].arrow_type))
            elif name in url_names:
                out.append(pa.field(name, url_names[name].url_type))
            else:
                out.append(pa.field(name, dtype))
        schema = pa.schema(out)
        return schema.with_metadata({b"huggingface": json.dumps(
            {"info": {"features": hf_features(schema, self.images)}}, sort_keys=True).encode()})


def assemble(table: Table, batch: Batch, *, schema: pa.Schema, source: ImageSource) -> pa.RecordBatch:
    """The output record batch: image bytes read through `source` for embedded image columns,
    storage URLs for the URL columns, the other columns as they come."""
    by_name = {c.name: c for c in table.images}
    by_url = {c.url: c for c in table.images}
    arrays = []
    for field in schema:
        column = by_name.get(field.name)
        url_of = by_url.get(field.name)
        if column is not None:
            values = [_image_values(column, keys, uids, source)
                      for keys, uids in zip(batch[column.key], batch[column.uid])]
        elif url_of is not None:
            values = [[source.url(k) for k in keys] if url_of.many else source.url(keys) for keys in batch[url_of.key]]
        else:
            values = batch[field.name]
        arrays.append(pa.array(values, type=field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _image_values(column: ImageColumn, keys, uids, source: ImageSource):
    def one(key, uid):
        data = source.read(key, uid=uid)
        return {"bytes": data, "path": None} if column.feature == "image" else data

    if column.many:
        return [one(k, u) for k, u in zip(keys, uids)]
    return one(keys, uids)


def hf_features(schema: pa.Schema, images: tuple[ImageColumn, ...]) -> dict:
    """Hugging Face `datasets` feature types of the schema's columns, so image columns load as
    images. Lists are written as `Sequence`, which datasets 3 and later all read."""
    image_features = {c.name: c.feature for c in images}
    return {field.name: _feature(field.type, image_features.get(field.name)) for field in schema}


def _feature(dtype: pa.DataType, image_feature: str | None) -> dict:
    if pa.types.is_list(dtype):
        return {"_type": "Sequence", "feature": _feature(dtype.value_type, image_feature)}
    if image_feature == "image":
        return {"_type": "Image"}
    if pa.types.is_timestamp(dtype):
        return {"_type": "Value", "dtype": f"timestamp[{dtype.unit}, tz={dtype.tz}]" if dtype.tz
                else f"timestamp[{dtype.unit}]"}
    names = {pa.string(): "string", pa.binary(): "binary", pa.int64(): "int64", pa.int32(): "int32",
             pa.int16(): "int16", pa.float64(): "float64", pa.float32(): "float32", pa.bool_(): "bool"}
    return {"_type": "Value", "dtype": names[dtype]}


def column_batches(rows: Iterator[list[tuple]], names: list[str],
                   convert: Callable[[tuple], tuple] | None = None) -> Iterator[Batch]:
    """Column lists from pages of row tuples (each page becomes one batch)."""
    for page in rows:
        if convert is not None:
            page = [convert(row) for row in page]
        columns = list(zip(*page)) if page else [() for _ in names]
        yield {name: list(values) for name, values in zip(names, columns)}
