"""Fast insert-or-skip for the import path, where Django's bulk_create spends most of its
time building model instances and SQL for hundreds of thousands of rows.

`insert_rows` writes rows that cannot conflict; `insert_new_rows` writes rows that are already in database form (JSON as text, datetimes
through `db_now()`), skips any row that hits a unique constraint, and returns the chosen
columns of the rows it did insert. PostgreSQL loads through COPY into a temporary table;
SQLite uses multi-row INSERT OR IGNORE ... RETURNING.
"""
from collections.abc import Sequence

from django.db import connection
from django.utils import timezone

SQLITE_MAX_VARIABLES = 32766


def db_now():
    return connection.ops.adapt_datetimefield_value(timezone.now())


def insert_new_rows(model, columns: Sequence[str], rows: Sequence[tuple], returning: Sequence[str]) -> list[tuple]:
    """Caller runs inside a transaction. Column names are the table's column names."""
    if not rows:
        return []
    table = model._meta.db_table
    cols = ", ".join(f'"{c}"' for c in columns)
    ret = ", ".join(f'"{c}"' for c in returning)
    if connection.vendor == "postgresql":
        return _insert_postgresql(table, cols, rows, ret)
    return _insert_sqlite(table, cols, len(columns), rows, ret)


def _insert_postgresql(table, cols, rows, ret):
    temp = f"_load_{table}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE TEMP TABLE IF NOT EXISTS "{temp}" AS SELECT {cols} FROM "{table}" WITH NO DATA')
        with cursor.cursor.copy(f'COPY "{temp}" ({cols}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(f'INSERT INTO "{table}" ({cols}) SELECT {cols} FROM "{temp}" ON CONFLICT DO NOTHING RETURNING {ret}')
        inserted = cursor.fetchall()
        cursor.execute(f'TRUNCATE "{temp}"')
    return inserted


def _insert_sqlite(table, cols, width, rows, ret):
    per_statement = max(1, SQLITE_MAX_VARIABLES // width)
    placeholders = "(" + ", ".join(["%s"] * width) + ")"
    inserted = []
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_statement):
            batch = rows[start:start + per_statement]
            values = ", ".join([placeholders] * len(batch))
            cursor.execute(f'INSERT OR IGNORE INTO "{table}" ({cols}) VALUES {values} RETURNING {ret}',
                           [v for row in batch for v in row])
            inserted.extend(cursor.fetchall())
    return inserted


def insert_rows(model, columns: Sequence[str], rows: Sequence[tuple]) -> int:
    """Insert rows the caller knows to be new (a unique violation aborts the transaction)."""
    if not rows:
        return 0
    table = model._meta.db_table
    cols = ", ".join(f'"{c}"' for c in columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f'COPY "{table}" ({cols}) FROM STDIN') as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            placeholders = ", ".join(["%s"] * len(columns))
            cursor.executemany(f'INSERT INTO "{table}" ({cols}) VALUES ({placeholders})', rows)
    return len(rows)


def reserve_ids(model, count: int) -> list[int] | None:
    """Draw `count` ids from the table's sequence (PostgreSQL), so rows written with COPY carry
    known ids and need no read-back; None where the database has no sequences to draw from."""
    if connection.vendor != "postgresql" or count == 0:
        return None
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [table, count])
        return [row[0] for row in cursor.fetchall()]
