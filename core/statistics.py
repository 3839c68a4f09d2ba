"""Planner statistics after bulk writes.

Imports (COPY), machine judgments and filter verdicts arrive in batches far faster than
autovacuum notices, and a planner working from an empty or stale picture of a table chooses
nested loops over millions of rows (a filter run went from 0.8 s to 14 s, an export from 4 s to
58 s). Whoever writes in bulk refreshes the statistics of what it wrote; whoever reads a lot
first refreshes the tables that changed much since their last ANALYZE.
"""
import logging

from django.db import connection

log = logging.getLogger(__name__)

# A table is re-analysed before a big read once this share of its rows changed since its last
# ANALYZE (autovacuum's own default is 10% plus 50 rows).
CHANGED_SHARE = 0.1
CHANGED_MIN_ROWS = 1000


def _tables(models) -> list[str]:
    return sorted({m._meta.db_table for m in models})


def statistics_refresh(*models) -> None:
    """ANALYZE the tables of `models` (after writing them in bulk). A no-op but on PostgreSQL:
    SQLite's planner does well enough on the demo's sizes without."""
    if connection.vendor != "postgresql" or not models:
        return
    _analyze(_tables(models), "after writing")


def statistics_refresh_if_stale(*models) -> list[str]:
    """ANALYZE those of `models`' tables that were never analysed or changed by more than
    CHANGED_SHARE of their rows since (before a big read). Returns the tables analysed."""
    if connection.vendor != "postgresql" or not models:
        return []
    tables = _tables(models)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_stat_user_tables WHERE relname = ANY(%s) AND ("
            " (last_analyze IS NULL AND last_autoanalyze IS NULL AND n_live_tup + n_mod_since_analyze > 0)"
            " OR n_mod_since_analyze > GREATEST(%s, %s * n_live_tup))",
            [tables, CHANGED_MIN_ROWS, CHANGED_SHARE])
        stale = sorted(row[0] for row in cursor.fetchall())
    if stale:
        _analyze(stale, "before reading")
    return stale


def _analyze(tables: list[str], when: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE " + ", ".join(connection.ops.quote_name(t) for t in tables))
    log.info("analysed %s %s", ", ".join(tables), when)
