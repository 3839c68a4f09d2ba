"""The k samples of a machine judge: how often it agrees with itself, and the one verdict that
stands for its samples everywhere else in the report.

A *query* is what a judge was asked once: one comparison (of one aspect) shown in one order, by
one version of one machine annotator. A job with `samples = k` stores k verdicts per query
(`PreferenceJudgment.sample` 0..k-1); other jobs store one. Two presentation orders are two
queries, and two versions are two judges' worth of queries: neither is a resample, so neither
enters self-consistency (the order swap has its own figure, `swap_agreement`).

Verdicts are CHOICE_A / CHOICE_B / CHOICE_TIE, as in `curation.stats.judgments`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curation.stats.judgments import CurationInputError, as_codes, integer_array


def query_codes(*, judge, version, unit, left_is_a) -> np.ndarray:
    """A dense code per row naming its query: (judge, version, unit, presentation order)."""
    columns = [as_codes(judge, name="judge"), as_codes(version, name="version"), as_codes(unit, name="unit"),
               np.asarray(left_is_a).astype(np.int64)]
    if len({c.size for c in columns}) > 1:
        raise CurationInputError("judge, version, unit and left_is_a must have equal lengths")
    if columns[0].size == 0:
        return np.zeros(0, dtype=np.int64)
    key = np.zeros(columns[0].size, dtype=np.int64)
    for column in columns:  # mixed radix: dense codes keep it far below 2**63
        key = key * (int(column.max()) + 1) + column
    return np.unique(key, return_inverse=True)[1].reshape(-1)


def _verdict_codes(verdict) -> np.ndarray:
    verdict = integer_array(verdict, name="verdict")
    if verdict.size and (verdict.min() < 0 or verdict.max() > 2):
        raise CurationInputError("verdict codes must be 0 (a), 1 (b) or 2 (tie)")
    return verdict


def _counts(query: np.ndarray, verdict: np.ndarray) -> np.ndarray:
    """(n_queries, 3): how many samples of each query gave a, b and tie."""
    n_queries = int(query.max()) + 1 if query.size else 0
    return np.bincount(query * 3 + verdict, minlength=n_queries * 3).reshape(n_queries, 3)


@dataclass(frozen=True)
class SelfConsistency:
    """How often one judge agrees with itself when asked the same query k times.

    Over the queries with two or more samples (`n_keys` of them): `agreement` is the mean, over
    those queries, of the share of their sample pairs that agree. A query whose k samples split
    into n_a, n_b, n_tie has sum_c n_c (n_c - 1) / (k (k - 1)) of its pairs agreeing: 1.0 when
    every sample is the same, 1/3 for a, a, b, and 0.5 on average for a judge tossing a coin
    between a and b. It is the chance that two samples of one query, drawn without replacement,
    give the same verdict. `all_agree_share` is the share of those queries whose samples all
    agree; `per_key` holds each query's share (NaN for a single sample). `mean_samples` is the
    mean number of samples per query over all queries (1.0: never resampled), `n_single_sample`
    the queries with one sample, which say nothing about consistency and are left out.
    """

    agreement: float
    all_agree_share: float
    per_key: np.ndarray
    n_keys: int
    mean_samples: float
    n_single_sample: int
    message: str | None = None


def self_consistency(*, query, verdict) -> SelfConsistency:
    """Self-consistency of one judge over k samples per query (k may vary by query).

    One row per stored verdict: `query` codes the query it answers (see `query_codes`; never mix
    presentation orders or versions in one code), `verdict` its a / b / tie.
    """
    query = as_codes(query, name="query")
    verdict = _verdict_codes(verdict)
    if query.size != verdict.size:
        raise CurationInputError("query and verdict must have equal lengths")
    counts = _counts(query, verdict)
    k = counts.sum(axis=1)
    asked = k >= 1
    sampled = k >= 2
    with np.errstate(divide="ignore", invalid="ignore"):
        per_key = np.where(sampled, (counts * (counts - 1)).sum(axis=1) / (k * (k - 1)), np.nan)
    n_keys = int(sampled.sum())
    message = None
    if query.size == 0:
        message = "no verdicts"
    elif n_keys == 0:
        message = "every query was asked once; self-consistency needs a job with samples > 1"
    return SelfConsistency(
        agreement=float(per_key[sampled].mean()) if n_keys else float("nan"),
        all_agree_share=float((per_key[sampled] == 1.0).mean()) if n_keys else float("nan"),
        per_key=per_key,
        n_keys=n_keys,
        mean_samples=float(k[asked].mean()) if asked.any() else float("nan"),
        n_single_sample=int((k == 1).sum()),
        message=message,
    )


def majority_of_samples(*, query, sample, verdict) -> tuple[np.ndarray, np.ndarray]:
    """One verdict per query, so that a judge asked k times counts once wherever judges are
    compared or counted: (rows, verdicts), one entry per query that has rows, in the order of
    `rows`.

    The verdict is the one most of the query's samples gave; when several tie for most, the one
    of the earliest sample (lowest `sample` index, then earliest row) among them. `rows[q]` is the
    index of the query's last row, so the result keeps the order the verdicts were made in (what
    "the last one stands" rules elsewhere rely on); `rows` is sorted.
    """
    query = as_codes(query, name="query")
    sample = integer_array(sample, name="sample")
    verdict = _verdict_codes(verdict)
    if not (query.size == sample.size == verdict.size):
        raise CurationInputError("query, sample and verdict must have equal lengths")
    if query.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    counts = _counts(query, verdict)
    top = counts.max(axis=1)
    is_top = counts[query, verdict] == top[query]
    position = np.arange(query.size)
    # Among each query's rows giving a top verdict, the earliest sample comes first.
    order = np.lexsort((position, sample, ~is_top, query))
    first = np.r_[True, query[order][1:] != query[order][:-1]]
    chosen = np.full(counts.shape[0], -1, dtype=np.int64)
    chosen[query[order][first]] = verdict[order][first]
    last = np.full(counts.shape[0], -1, dtype=np.int64)
    np.maximum.at(last, query, position)
    present = np.flatnonzero(last >= 0)
    by_time = np.argsort(last[present], kind="stable")
    present = present[by_time]
    return last[present], chosen[present]
