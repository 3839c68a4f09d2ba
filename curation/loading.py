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

from curation.selectors import live_judgment_sql
from curation.stats.judge_samples import majority_of_samples, query_codes
from curation.stats.judgments import PairwiseJudgments

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
    sample: np.ndarray | None = None  # per row: a machine verdict's sample index (0 for people)
    version: np.ndarray | None = None  # per row: a code of its machine annotator version (0 for people)

    def _rows(self, rows: np.ndarray, *, unit: np.ndarray, n_units: int, choice=None) -> "PairwiseJudgments":
        j = self.judgments
        return PairwiseJudgments.from_arrays(
            unit=unit, rater=j.rater[rows], choice=j.choice[rows] if choice is None else choice,
            left_is_a=None if j.left_is_a is None else j.left_is_a[rows],
            seconds=None if j.seconds is None else j.seconds[rows], n_units=n_units, n_raters=j.n_raters)

    def _pick(self, array: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
        return None if array is None else array[rows]

    def keeping_units(self, keep: np.ndarray) -> "LoadedPairwise":
        """The judgments of the units where `keep` is true, units re-coded densely (raters kept as they are)."""
        j = self.judgments
        new_code = np.cumsum(keep) - 1
        rows = np.flatnonzero(keep[j.unit])
        judgments = self._rows(rows, unit=new_code[j.unit[rows]], n_units=int(keep.sum()))
        return LoadedPairwise(judgments=judgments, comparison_ids=self.comparison_ids[keep], rater_ids=self.rater_ids,
                              sample=self._pick(self.sample, rows), version=self._pick(self.version, rows))

    def query_codes(self) -> np.ndarray:
        """Per row, a code of the query it answers: (rater, version, unit, presentation order);
        a machine judge's k samples of one query share it (see `curation.stats.judge_samples`)."""
        j = self.judgments
        zeros = np.zeros(len(j), dtype=np.int64)
        return query_codes(judge=j.rater, version=zeros if self.version is None else self.version, unit=j.unit,
                           left_is_a=zeros if j.left_is_a is None else j.left_is_a)

    def one_per_query(self) -> "LoadedPairwise":
        """One row per query, holding the majority of its samples (`majority_of_samples`), in the
        order the queries were last answered; units and raters keep their codes. A judge asked k
        times then counts once wherever rows are counted or compared."""
        j = self.judgments
        rows, choice = majority_of_samples(query=self.query_codes(),
                                           sample=np.zeros(len(j), dtype=np.int64) if self.sample is None
                                           else self.sample, verdict=j.choice)
        judgments = self._rows(rows, unit=j.unit[rows], n_units=j.n_units, choice=choice)
        return LoadedPairwise(judgments=judgments, comparison_ids=self.comparison_ids, rater_ids=self.rater_ids,
                              sample=np.zeros(rows.size, dtype=np.int64), version=self._pick(self.version, rows))


def pairwise_judgments_load(*, project_id: int, aspect: str = "overall", source: str = "human",
                            machine_version: str | None = None) -> LoadedPairwise:
    """Live preference judgments (not retracted, not set aside by a suspension) of one project
    and aspect, in the order they were made, each with its sample index and a code of its machine
    annotator version. `source`: human, machine or all; `machine_version` keeps one annotator version."""
    if source not in _SOURCES:
        raise ValueError(f"source must be one of {', '.join(_SOURCES)}, not {source!r}")
    where = [f"j.project_id = {int(project_id)}", _SOURCES[source], live_judgment_sql("j")]
    params = [aspect]
    where.append("j.aspect = %s")
    if machine_version is not None:
        where.append("j.machine_version = %s")
        params.append(machine_version)
    # People have sample 0 and no version (a check constraint): reading those columns would cost
    # the big human loads time for nothing. A version is named by its first row's id, a number.
    machine_columns = "" if source == "human" else \
        ", j.sample, MIN(j.id) OVER (PARTITION BY j.machine_annotator_id, j.machine_version)"
    sql = (f"SELECT j.comparison_id, COALESCE(j.annotator_id, -j.machine_annotator_id), {_CHOICE_CASE}, "
           f"CASE WHEN j.left_image_id = c.image_a_id THEN 1 ELSE 0 END, COALESCE(j.latency_ms, -1)"
           f"{machine_columns} "
           f"FROM annotation_preferencejudgment j JOIN annotation_comparison c ON c.id = j.comparison_id "
           f"WHERE {' AND '.join(where)} ORDER BY j.id")
    rows = _number_rows(sql, params, columns=5 if source == "human" else 7)
    if source == "human":
        sample = version = np.zeros(len(rows), dtype=np.int64)
    else:
        sample, version = rows[:, 5].copy(), np.unique(rows[:, 6], return_inverse=True)[1].reshape(-1)
    comparison_ids, unit = np.unique(rows[:, 0], return_inverse=True)
    rater_ids, rater = np.unique(rows[:, 1], return_inverse=True)
    latency = rows[:, 4].astype(np.float64)
    latency[latency < 0] = np.nan
    judgments = PairwiseJudgments.from_arrays(
        unit=unit, rater=rater, choice=rows[:, 2], left_is_a=rows[:, 3].astype(bool), seconds=latency / 1000.0,
        n_units=len(comparison_ids), n_raters=len(rater_ids))
    return LoadedPairwise(judgments=judgments, comparison_ids=comparison_ids, rater_ids=rater_ids, sample=sample,
                          version=version)


def pairwise_aspects(*, project_id: int, source: str = "human") -> list[str]:
    """The aspects that have live preference judgments from `source` in the project, sorted."""
    if source not in _SOURCES:
        raise ValueError(f"source must be one of {', '.join(_SOURCES)}, not {source!r}")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT DISTINCT j.aspect FROM annotation_preferencejudgment j WHERE j.project_id = %s "
                       f"AND {_SOURCES[source]} AND {live_judgment_sql('j')} ORDER BY j.aspect", [int(project_id)])
        return [row[0] for row in cursor.fetchall()]


@dataclass(frozen=True)
class ComparisonImages:
    """For each asked comparison id: its images and prompt (-1 where the comparison no longer exists)."""

    image_a: np.ndarray
    image_b: np.ndarray
    prompt: np.ndarray

    @property
    def missing(self) -> np.ndarray:
        return self.image_a < 0

    def codes(self) -> ImageGraph:
        """Dense image and prompt codes of the comparisons (all must exist)."""
        if self.missing.any():
            raise ValueError("codes() needs every comparison to exist; leave the missing ones out first")
        image_ids, ends = np.unique(np.concatenate([self.image_a, self.image_b]), return_inverse=True)
        n = self.image_a.size
        prompt_ids, prompt = np.unique(np.concatenate([self.prompt, self.prompt]), return_inverse=True)
        prompt_of_image = np.zeros(image_ids.size, dtype=np.int64)
        prompt_of_image[ends] = prompt
        return ImageGraph(image_a=ends[:n], image_b=ends[n:], prompt_of_image=prompt_of_image, image_ids=image_ids)


@dataclass(frozen=True)
class ImageGraph:
    """Per unit the image codes of its two sides; per image code its prompt code and image id."""

    image_a: np.ndarray
    image_b: np.ndarray
    prompt_of_image: np.ndarray
    image_ids: np.ndarray


def comparison_images_load(*, project_id: int, comparison_ids: np.ndarray) -> ComparisonImages:
    """Image a, image b and prompt id of each comparison in `comparison_ids` (sorted ids, as the
    loader returns them); a comparison deleted since (its image was deleted) reads -1."""
    rows = _number_rows("SELECT id, image_a_id, image_b_id, prompt_id FROM annotation_comparison "
                        "WHERE project_id = %s ORDER BY id", [int(project_id)], columns=4)
    position = np.clip(np.searchsorted(rows[:, 0], comparison_ids), 0, max(len(rows) - 1, 0))
    found = (rows[position, 0] == comparison_ids) if len(rows) else np.zeros(len(comparison_ids), dtype=bool)
    pick = np.full((len(comparison_ids), 3), -1, dtype=np.int64)
    pick[found] = rows[position[found], 1:]
    return ComparisonImages(image_a=pick[:, 0], image_b=pick[:, 1], prompt=pick[:, 2])


@dataclass(frozen=True)
class LoadedScores:
    """Aspect scores or personal ratings, one row per live judgment in the order they were made.

    `image` and `rater` are dense codes into `image_ids` / `rater_ids` (rater ids as in
    `LoadedPairwise`); `aspect` indexes `aspects` (all 0 for personal ratings); `content`
    codes the image's file (sha256), so two images of the same file share a code; `value`
    is the score, NaN kept (the computations drop and count it).
    """

    image: np.ndarray
    rater: np.ndarray
    aspect: np.ndarray
    content: np.ndarray
    value: np.ndarray
    image_ids: np.ndarray
    rater_ids: np.ndarray
    aspects: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.image.size)


_SCORE_TABLES = {"aspect_score": "annotation_aspectscore", "personal_rating": "annotation_personalrating"}


def image_scores_load(*, project_id: int, kind: str = "aspect_score", aspects=(), source: str = "human"
                      ) -> LoadedScores:
    """Live aspect scores (of the given `aspects`, others left out) or personal ratings of a
    project from `source`, with dense codes; see `LoadedScores`."""
    if source not in _SOURCES:
        raise ValueError(f"source must be one of {', '.join(_SOURCES)}, not {source!r}")
    if kind not in _SCORE_TABLES:
        raise ValueError(f"kind must be one of {', '.join(_SCORE_TABLES)}, not {kind!r}")
    aspects = tuple(aspects) if kind == "aspect_score" else ("",)
    params: list = []
    if kind == "aspect_score":
        if not aspects:
            raise ValueError("aspect scores need the aspects to load")
        aspect_case = "CASE j.aspect " + " ".join("WHEN %s THEN " + str(k) for k in range(len(aspects))) + " END"
        params += list(aspects)
        aspect_filter = "AND j.aspect IN (" + ", ".join(["%s"] * len(aspects)) + ")"
    else:
        aspect_case, aspect_filter = "0", ""
    # The first image (lowest id) of the project holding the same file codes the content.
    sql = (f"SELECT j.image_id, COALESCE(j.annotator_id, -j.machine_annotator_id), {aspect_case}, f.first_id, j.value "
           f"FROM {_SCORE_TABLES[kind]} j JOIN annotation_image i ON i.id = j.image_id "
           f"JOIN (SELECT sha256, MIN(id) AS first_id FROM annotation_image WHERE project_id = %s GROUP BY sha256) f "
           f"ON f.sha256 = i.sha256 WHERE j.project_id = %s AND {_SOURCES[source]} AND {live_judgment_sql('j')} "
           f"{aspect_filter} ORDER BY j.id")
    params = params + [int(project_id), int(project_id)] + (list(aspects) if kind == "aspect_score" else [])
    rows = _number_rows(sql, params, columns=5, dtype=np.float64)
    codes = rows[:, :4].astype(np.int64)
    image_ids, image = np.unique(codes[:, 0], return_inverse=True)
    rater_ids, rater = np.unique(codes[:, 1], return_inverse=True)
    content = np.unique(codes[:, 3], return_inverse=True)[1]
    return LoadedScores(image=image, rater=rater, aspect=codes[:, 2], content=content, value=rows[:, 4],
                        image_ids=image_ids, rater_ids=rater_ids, aspects=aspects)


def _number_rows(sql: str, params: list, *, columns: int, dtype=np.int64) -> np.ndarray:
    """An (n, columns) array of a query whose every column is a number (`dtype` float64 keeps
    NaN; ids stay exact below 2**53)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            query = cursor.mogrify(sql, params)
            query = query if isinstance(query, str) else query.decode()
            chunks = []
            with cursor.cursor.copy(f"COPY ({query}) TO STDOUT") as copy:
                for block in copy:
                    chunks.append(bytes(block))
            data = b"".join(chunks)
            values = np.array(data.split(), dtype=dtype) if data else np.empty(0, dtype=dtype)
        else:
            cursor.execute(sql, params)
            values = np.array(cursor.fetchall(), dtype=dtype).reshape(-1)
    return values.reshape(-1, columns)
