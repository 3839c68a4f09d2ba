"""Reading what an export needs out of the database in pages, so memory stays flat whatever the
project's size.

`stream` runs one query and fetches its rows a page at a time: on PostgreSQL through a
server-side cursor on a connection of its own (so the export's progress, written on Django's
connection, is committed and visible while the rows stream) unless the caller is inside a
transaction, whose rows only its own connection sees; elsewhere through a plain cursor.
`pages` is for small driving queries (prompts): keyset pages, `WHERE key > last ORDER BY key`.
Rows that may still be added while an export runs are cut at an id ceiling taken at its start.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timezone

from django.db import connection

from annotation.services import annotator_profiles_ensure
from curation.selectors import live_human_sql

PAGE_ROWS = 20_000



def pages(sql: str, params: list, *, page_rows: int = PAGE_ROWS) -> Iterator[list[tuple]]:
    """Pages of the rows of `sql`, whose first column is the ordering key and which ends in
    `AND <key> > %s ORDER BY <key>` (the last key seen is passed there); LIMIT is appended."""
    last = -1
    while True:
        with connection.cursor() as cursor:
            cursor.execute(f"{sql} LIMIT %s", [*params, last, page_rows])
            rows = cursor.fetchall()
        if not rows:
            return
        yield rows
        if len(rows) < page_rows:
            return
        last = rows[-1][0]


def stream(sql: str, params: list, *, page_rows: int = PAGE_ROWS) -> Iterator[list[tuple]]:
    """Pages of the rows of one query, in its order, read as they are needed."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            while rows := cursor.fetchmany(page_rows):
                yield rows
        return
    connection.ensure_connection()
    if connection.in_atomic_block:
        # The caller's transaction may hold rows no other connection can see yet: read them here.
        with connection.connection.cursor(name=f"prefstudio_export_{id(sql)}") as cursor:
            yield from _fetch_pages(cursor, sql, params, page_rows)
        return
    raw = connection.get_new_connection(connection.get_connection_params())
    try:
        with raw.transaction(), raw.cursor(name="prefstudio_export") as cursor:
            yield from _fetch_pages(cursor, sql, params, page_rows)
    finally:
        raw.close()


def _fetch_pages(cursor, sql: str, params: list, page_rows: int) -> Iterator[list[tuple]]:
    cursor.itersize = page_rows
    cursor.execute(sql, params)
    while rows := cursor.fetchmany(page_rows):
        yield rows


def scalar(sql: str, params: list):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return row[0] if row else None


def epoch_us(expression: str) -> str:
    """SQL for a timestamp as microseconds since the epoch on PostgreSQL (parsing a million
    timestamps in Python costs seconds); other databases hand back the value itself."""
    if connection.vendor == "postgresql":
        return f"CAST(EXTRACT(EPOCH FROM {expression}) * 1000000 AS BIGINT)"
    return expression


def timestamp(value) -> datetime | None:
    """A database timestamp for an Arrow timestamp column: epoch microseconds (see `epoch_us`)
    pass through, text (SQLite, for aggregates) and naive values become aware datetimes."""
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value  # aware values are stored as UTC by pyarrow whatever their zone


def pseudonym(value) -> str | None:
    """A profile's pseudonym as its canonical UUID text, whatever the database's UUID column type."""
    if value is None:
        return None
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))


def pseudonyms_ensure(*, table: str, project_id: int) -> None:
    """Every person with a live judgment in `table` gets a profile (hence a pseudonym)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT DISTINCT j.annotator_id FROM {table} j LEFT JOIN annotation_annotatorprofile p "
                       f"ON p.user_id = j.annotator_id WHERE j.project_id = %s AND {live_human_sql('j')} "
                       f"AND p.id IS NULL", [project_id])
        missing = [row[0] for row in cursor.fetchall()]
    if missing:
        annotator_profiles_ensure(user_ids=missing)
