"""Writing a table's record batches into shard files: Parquet, JSONL with an image folder, or
WebDataset tar. Every writer is deterministic: the same batches give the same bytes (no clocks,
no owners, fixed ordering), and each finished shard is handed to the destination at once."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curation.exports.images import image_extension
from curation.exports.tables import Table

EXTENSIONS = {"parquet": "parquet", "jsonl": "jsonl", "webdataset": "tar"}


def shard_glob(container: str, table: Table) -> str:
    return f"data/{table.config}/{table.split}-*.{EXTENSIONS[container]}"


class ShardWriter:
    """Rolls over to a new shard every `shard_rows` rows; subclasses write one shard's file.
    `on_file(relative, rows=, config=, split=)` is called with every file finished under `root`:
    each shard, and each image file of the JSONL container (without rows, config or split)."""

    def __init__(self, *, root: Path, table: Table, schema: pa.Schema, shard_rows: int, group_rows: int,
                 on_file):
        self.root, self.table, self.schema = root, table, schema
        self.shard_rows, self.group_rows = shard_rows, group_rows
        self.on_file = on_file
        self.index = 0
        self.rows_in_shard = 0
        self.shard_path: str | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        offset = 0
        while offset < batch.num_rows:
            if self.shard_path is None:
                self.shard_path = (f"data/{self.table.config}/{self.table.split}-{self.index:05d}."
                                   f"{EXTENSIONS[self.container]}")
                (self.root / self.shard_path).parent.mkdir(parents=True, exist_ok=True)
                self.open(self.root / self.shard_path)
            take = min(batch.num_rows - offset, self.shard_rows - self.rows_in_shard)
            self.append(batch.slice(offset, take))
            offset += take
            self.rows_in_shard += take
            if self.rows_in_shard >= self.shard_rows:
                self._finish_shard()

    def close(self) -> None:
        """Finish the last shard. A table without rows writes no file (Hugging Face datasets
        refuses a split without data), and the card leaves it out."""
        if self.shard_path is not None:
            self._finish_shard()

    def _finish_shard(self) -> None:
        self.finish()
        self.on_file(self.shard_path, rows=self.rows_in_shard, config=self.table.config, split=self.table.split)
        self.index += 1
        self.rows_in_shard = 0
        self.shard_path = None

    container = ""

    def open(self, path: Path) -> None:
        raise NotImplementedError

    def append(self, batch: pa.RecordBatch) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError


class ParquetShardWriter(ShardWriter):
    """Row groups of `group_rows` rows; image columns stored uncompressed (JPEG / PNG bytes do not
    shrink) but dictionary-encoded, so an image that recurs within a row group (a prompt's image is
    in several of its pairs) is stored once there; readers get plain bytes back. The rest is zstd."""

    container = "parquet"

    def open(self, path):
        image_names = {c.name for c in self.table.images}
        compression = {f.name: ("NONE" if f.name in image_names else "ZSTD") for f in self.schema}
        embedded = any(f.name in image_names for f in self.schema)
        # The dictionary of a row group's images must not spill over into plain pages.
        self._writer = pq.ParquetWriter(path, self.schema, compression=compression, use_dictionary=True,
                                        dictionary_pagesize_limit=(512 if embedded else 1) * 1024 * 1024,
                                        write_statistics=True)
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0

    def append(self, batch):
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        if self._pending_rows >= self.group_rows:
            self._flush(whole_groups=True)

    def _flush(self, *, whole_groups: bool) -> None:
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        rows = (table.num_rows // self.group_rows) * self.group_rows if whole_groups else table.num_rows
        if rows:
            self._writer.write_table(table.slice(0, rows), row_group_size=self.group_rows)
        rest = table.slice(rows)
        self._pending = rest.to_batches() if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def finish(self):
        self._flush(whole_groups=False)
        self._writer.close()


def _image_file_name(data: bytes) -> str:
    """Image files of the file containers are named by their content, so each is written once."""
    return f"{hashlib.sha256(data).hexdigest()}.{image_extension(data)}"


def _json_value(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and value != value:
        return None
    return value


def _json_field(value):
    return [_json_value(v) for v in value] if isinstance(value, list) else _json_value(value)


def _image_bytes(value, column) -> list[bytes]:
    """The encoded images of one cell: raw bytes, or HF Image structs, one or a list."""
    return [v["bytes"] if isinstance(v, dict) else v for v in (value if column.many else [value])]


def _rows(batch: pa.RecordBatch, table: Table, store_image) -> Iterator[dict]:
    """The batch's rows as JSON-ready dicts, each image replaced by what `store_image(bytes)` returns."""
    image_columns = {c.name: c for c in table.images}
    for row in batch.to_pylist():
        out = {}
        for name, value in row.items():
            column = image_columns.get(name)
            if column is None:
                out[name] = _json_field(value)
                continue
            stored = [store_image(data) for data in _image_bytes(value, column)]
            out[name] = stored if column.many else stored[0]
        yield out


def _dumps(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class JsonlShardWriter(ShardWriter):
    """One JSON object per line; embedded images become files under images/ (shared by all shards,
    written once per content) and the column holds their relative path."""

    container = "jsonl"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._images_written: set[str] = set()

    def open(self, path):
        self._file = open(path, "w", encoding="utf-8", newline="\n")

    def _store(self, data: bytes) -> str:
        name = _image_file_name(data)
        relative = f"images/{name[:2]}/{name}"
        if name not in self._images_written:
            target = self.root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            self._images_written.add(name)
            self.on_file(relative)
        return relative

    def append(self, batch):
        for row in _rows(batch, self.table, self._store):
            self._file.write(_dumps(row))
            self._file.write("\n")

    def finish(self):
        self._file.close()


class WebDatasetShardWriter(ShardWriter):
    """A tar shard per `shard_rows` samples; sample `k` is `k.json` (every non-image column) plus
    `k.<column>.<ext>` per image (`k.<column>_<i>.<ext>` for lists). Members carry no times,
    owners or modes but 0o644, so the bytes depend on the data only."""

    container = "webdataset"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._sample = 0  # sample keys run on across shards

    def open(self, path):
        self._tar = tarfile.open(path, "w", format=tarfile.USTAR_FORMAT)

    def _add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = \
            len(data), 0, 0o644, 0, 0, "", ""
        self._tar.addfile(info, io.BytesIO(data))

    def append(self, batch):
        image_columns = {c.name: c for c in self.table.images}
        for row in batch.to_pylist():
            key = f"{self._sample:09d}"
            fields = {name: _json_field(value) for name, value in row.items() if name not in image_columns}
            self._add(f"{key}.json", _dumps(fields).encode())
            for name, value in row.items():
                column = image_columns.get(name)
                if column is None:
                    continue
                for index, data in enumerate(_image_bytes(value, column)):
                    suffix = f"{name}_{index}" if column.many else name
                    self._add(f"{key}.{suffix}.{image_extension(data)}", data)
            self._sample += 1

    def finish(self):
        self._tar.close()


WRITERS = {"parquet": ParquetShardWriter, "jsonl": JsonlShardWriter, "webdataset": WebDatasetShardWriter}
