"""Curation over 1,000,000 pairwise judgments (100,000 comparisons x 10 annotators) read from
PostgreSQL: the time to load them and to compute the figures built so far (Krippendorff's
alpha, Dawid-Skene consensus), and the peak memory. The issue's whole filter run (target
<= 60 s, <= 2 GB) adds machine-judge checks and writing verdicts, not built yet.
"""
import argparse
import time

from common import peak_rss_mb, report, setup_django


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--comparisons", type=int, default=100_000)
    parser.add_argument("--annotators", type=int, default=10)
    args = parser.parse_args()
    setup_django(fresh_database=True)
    from django.contrib.auth import get_user_model
    from django.db import connection

    from curation.aggregation import weighted_consensus
    from curation.agreement import krippendorff_alpha
    from curation.judgments import Ratings
    from curation.loading import pairwise_judgments_load
    from seed import project_with_comparisons

    project = project_with_comparisons(slug="curation", comparisons=args.comparisons)
    users = [get_user_model().objects.create_user(f"rater{i}") for i in range(args.annotators)]
    with connection.cursor() as cursor:
        # Each rater answers every comparison: the truth is "a" when the comparison id is even;
        # rater i is right with probability 0.6 + 0.035 i (hash-based, reproducible).
        cursor.execute(
            "INSERT INTO annotation_preferencejudgment (project_id, source, annotator_id, machine_version, "
            "rationale, is_gold, created_at, comparison_id, aspect, choice, left_image_id) "
            "SELECT c.project_id, 'human', u.id, '', '', false, now(), c.id, 'overall', "
            "CASE WHEN (abs(hashtext(c.id || ':' || u.id)) %% 1000) < (600 + 35 * u.n) "
            "     THEN (CASE WHEN c.id %% 2 = 0 THEN 'a' ELSE 'b' END) "
            "     ELSE (CASE WHEN c.id %% 2 = 0 THEN 'b' ELSE 'a' END) END, "
            "CASE WHEN (c.id + u.id) %% 2 = 0 THEN c.image_a_id ELSE c.image_b_id END "
            "FROM annotation_comparison c CROSS JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n "
            "FROM auth_user WHERE id = ANY(%s)) u WHERE c.project_id = %s",
            [[u.id for u in users], project.id])
        cursor.execute("ANALYZE annotation_preferencejudgment")

    started = time.perf_counter()
    loaded = pairwise_judgments_load(project_id=project.id)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    alpha = krippendorff_alpha(Ratings.from_pairwise(loaded.judgments))
    alpha_s = time.perf_counter() - started
    started = time.perf_counter()
    weighted_consensus(loaded.judgments)
    consensus_s = time.perf_counter() - started
    context = {"judgments": len(loaded.judgments), "comparisons": args.comparisons, "database": "postgresql"}
    report("curation_load_seconds", load_s, "s", **context)
    report("curation_alpha_seconds", alpha_s, "s", alpha=round(float(alpha.alpha), 4), **context)
    report("curation_dawid_skene_seconds", consensus_s, "s", **context)
    report("curation_peak_rss_mb", peak_rss_mb(), "MB", target="<= 2048 for the whole filter run", **context)


if __name__ == "__main__":
    main()
