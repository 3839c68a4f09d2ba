"""Curation over 1,000,000 pairwise judgments (100,000 comparisons x 10 annotators) plus 4
machine judges asked in both orders (800,000 verdicts), read from PostgreSQL: the load, alpha,
Dawid-Skene and the Bradley-Terry left-advantage fit (with its comparison read) on their own,
then a whole filter run (rater checks, consensus, bootstrap, machine-judge checks, 100,000
verdicts written). Target for the run: <= 60 s, <= 2 GB.
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

    from curation.stats.aggregation import weighted_consensus
    from curation.stats.agreement import krippendorff_alpha
    from curation.stats.judgments import Ratings
    from annotation.models import MachineAnnotator
    from curation.loading import comparison_images_load, pairwise_judgments_load
    from curation.stats.rater_bias import bradley_terry_left_advantage
    from curation.models import FilterRun
    from curation.rules import FilterRules
    from curation.services import filter_run_execute
    from seed import project_with_comparisons

    project = project_with_comparisons(slug="curation", comparisons=args.comparisons)
    users = [get_user_model().objects.create_user(f"rater{i}") for i in range(args.annotators)]
    with connection.cursor() as cursor:
        # Each rater answers every comparison: the truth is "a" when the comparison id is even;
        # rater i is right with probability 0.6 + 0.035 i (hash-based, reproducible).
        cursor.execute(
            "INSERT INTO annotation_preferencejudgment (project_id, source, annotator_id, machine_version, "
            "rationale, is_gold, excluded_reason, created_at, comparison_id, aspect, choice, left_image_id) "
            "SELECT c.project_id, 'human', u.id, '', '', false, '', now(), c.id, 'overall', "
            "CASE WHEN (abs(hashtext(c.id || ':' || u.id)) %% 1000) < (600 + 35 * u.n) "
            "     THEN (CASE WHEN c.id %% 2 = 0 THEN 'a' ELSE 'b' END) "
            "     ELSE (CASE WHEN c.id %% 2 = 0 THEN 'b' ELSE 'a' END) END, "
            "CASE WHEN (abs(hashtext(u.id || '/' || c.id)) %% 2) = 0 THEN c.image_a_id ELSE c.image_b_id END "
            "FROM annotation_comparison c CROSS JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n "
            "FROM auth_user WHERE id = ANY(%s)) u WHERE c.project_id = %s",
            [[u.id for u in users], project.id])
        judges = [MachineAnnotator.objects.create(name=f"judge{k}", backend="openai_chat", model_ref="m",
                                                  version=f"v{k}") for k in range(4)]
        for k, judge in enumerate(judges):
            # judge k is right 70 + 5k percent of the time, in both presentation orders
            cursor.execute(
                "INSERT INTO annotation_preferencejudgment (project_id, source, machine_annotator_id, "
                "machine_version, rationale, is_gold, excluded_reason, created_at, comparison_id, aspect, choice, "
                "left_image_id) "
                "SELECT c.project_id, 'machine', %s, %s, '', false, '', now(), c.id, 'overall', "
                "CASE WHEN (abs(hashtext(c.id || ':' || o.first)) %% 100) < %s "
                "     THEN (CASE WHEN c.id %% 2 = 0 THEN 'a' ELSE 'b' END) "
                "     ELSE (CASE WHEN c.id %% 2 = 0 THEN 'b' ELSE 'a' END) END, "
                "CASE WHEN o.first = 0 THEN c.image_a_id ELSE c.image_b_id END "
                "FROM annotation_comparison c CROSS JOIN (VALUES (0), (1)) o(first) WHERE c.project_id = %s",
                [judge.id, judge.version, 70 + 5 * k, project.id])
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
    started = time.perf_counter()
    graph = comparison_images_load(project_id=project.id, comparison_ids=loaded.comparison_ids).codes()
    fit = bradley_terry_left_advantage(loaded.judgments, image_a=graph.image_a, image_b=graph.image_b,
                                       prompt_of_image=graph.prompt_of_image)
    bradley_terry_s = time.perf_counter() - started
    context = {"judgments": len(loaded.judgments), "comparisons": args.comparisons, "database": "postgresql"}
    report("curation_load_seconds", load_s, "s", **context)
    report("curation_alpha_seconds", alpha_s, "s", alpha=round(float(alpha.alpha), 4), **context)
    report("curation_dawid_skene_seconds", consensus_s, "s", **context)
    report("curation_left_advantage_fit_seconds", bradley_terry_s, "s", iterations=fit.n_iterations,
           images=int(fit.strength.size), raters=int(fit.n_sided.size), **context)
    rss_before_run = peak_rss_mb()
    run = FilterRun.objects.create(project=project, name="bench", version=1, rules=FilterRules().as_json())
    started = time.perf_counter()
    run = filter_run_execute(run_id=run.pk)
    run_s = time.perf_counter() - started
    assert run.status == "succeeded", run.message
    context["machine_verdicts"] = sum(j["judgments"] for j in run.summary["machine_judges"])
    report("curation_filter_run_seconds", run_s, "s", target="<= 20", kept=run.summary["kept"], **context)
    report("curation_peak_rss_mb", peak_rss_mb(), "MB", target="<= 1024", rss_before_run_mb=round(rss_before_run),
           **context)


if __name__ == "__main__":
    main()
