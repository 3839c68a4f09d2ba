"""Reading what an export needs out of the database in pages, so memory stays flat whatever the
project's size. Pages are keyset pages (`WHERE key > last ORDER BY key LIMIT n`) over an id
ceiling taken once where rows may still be added, which works on PostgreSQL and SQLite alike and never holds a long transaction.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timezone

from django.db import connection

from annotation.services import annotator_profiles_ensure

PAGE_ROWS = 20_000

# Live human judgments: not undone, not set aside by a suspension.
LIVE_HUMAN = "{t}.source = 'human' AND {t}.retracted_at IS NULL AND {t}.excluded_reason = ''"


def live_human(alias: str) -> str:
    return LIVE_HUMAN.format(t=alias)


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


def scalar(sql: str, params: list):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return row[0] if row else None


def timestamp(value) -> datetime | None:
    """A database timestamp as an aware UTC datetime (SQLite hands back text for aggregates)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def pseudonym(value) -> str | None:
    """A profile's pseudonym as its canonical UUID text, whatever the database's UUID column type."""
    if value is None:
        return None
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))


def pseudonyms_ensure(*, table: str, project_id: int) -> None:
    """Every person with a live judgment in `table` gets a profile (hence a pseudonym)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT DISTINCT j.annotator_id FROM {table} j LEFT JOIN annotation_annotatorprofile p "
                       f"ON p.user_id = j.annotator_id WHERE j.project_id = %s AND {live_human('j')} "
                       f"AND p.id IS NULL", [project_id])
        missing = [row[0] for row in cursor.fetchall()]
    if missing:
        annotator_profiles_ensure(user_ids=missing)
