"""Reading judgments out of the database into the curation containers, in one pass.

On PostgreSQL the rows come through one `COPY (SELECT ...) TO STDOUT` (integers only) and are
parsed by numpy in bulk, so a million judgments load in about a second; other databases use a
plain cursor. Ids become dense codes (0..n-1); the id arrays returned beside them translate
codes back.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.db import connection

from curation.judgments import PairwiseJudgments

_CHOICE_CASE = "CASE j.choice WHEN 'a' THEN 0 WHEN 'b' THEN 1 ELSE 2 END"
_SOURCES = {
    "human": "j.source = 'human'",
    "machine": "j.source = 'machine'",
    "all": "TRUE",
}


@dataclass(frozen=True)
class LoadedPairwise:
    judgments: PairwiseJudgments
    comparison_ids: np.ndarray  # unit code -> comparison id
    rater_ids: np.ndarray  # rater code -> user id (> 0) or minus the machine annotator id (< 0)


def pairwise_judgments_load(*, project_id: int, aspect: str = "overall", source: str = "human",
                            machine_version: str | None = None) -> LoadedPairwise:
    """Live preference judgments (not retracted, not set aside by a suspension) of one project
    and aspect, in the order they were made. `source`: human, machine or all; `machine_version` keeps one annotator version."""
    if source not in _SOURCES:
        raise ValueError(f"source must be one of {', '.join(_SOURCES)}, not {source!r}")
    where = [f"j.project_id = {int(project_id)}", _SOURCES[source], "j.retracted_at IS NULL",
             "j.excluded_reason = ''"]
    params = [aspect]
    where.append("j.aspect = %s")
    if machine_version is not None:
        where.append("j.machine_version = %s")
        params.append(machine_version)
    sql = (f"SELECT j.comparison_id, COALESCE(j.annotator_id, -j.machine_annotator_id), {_CHOICE_CASE}, "
           f"CASE WHEN j.left_image_id = c.image_a_id THEN 1 ELSE 0 END, COALESCE(j.latency_ms, -1) "
           f"FROM annotation_preferencejudgment j JOIN annotation_comparison c ON c.id = j.comparison_id "
           f"WHERE {' AND '.join(where)} ORDER BY j.id")
    rows = _integer_rows(sql, params, columns=5)
    comparison_ids, unit = np.unique(rows[:, 0], return_inverse=True)
    rater_ids, rater = np.unique(rows[:, 1], return_inverse=True)
    latency = rows[:, 4].astype(np.float64)
    latency[latency < 0] = np.nan
    judgments = PairwiseJudgments.from_arrays(
        unit=unit, rater=rater, choice=rows[:, 2], left_is_a=rows[:, 3].astype(bool), seconds=latency / 1000.0,
        n_units=len(comparison_ids), n_raters=len(rater_ids))
    return LoadedPairwise(judgments=judgments, comparison_ids=comparison_ids, rater_ids=rater_ids)


def _integer_rows(sql: str, params: list, *, columns: int) -> np.ndarray:
    """An (n, columns) int64 array of a query whose every column is an integer."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            query = cursor.mogrify(sql, params)
            query = query if isinstance(query, str) else query.decode()
            chunks = []
            with cursor.cursor.copy(f"COPY ({query}) TO STDOUT") as copy:
                for block in copy:
                    chunks.append(bytes(block))
            data = b"".join(chunks)
            values = np.array(data.split(), dtype=np.int64) if data else np.empty(0, dtype=np.int64)
        else:
            cursor.execute(sql, params)
            values = np.array(cursor.fetchall(), dtype=np.int64).reshape(-1)
    return values.reshape(-1, columns)
