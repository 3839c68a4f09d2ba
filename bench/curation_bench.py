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
    from curation.stats.aggregation import weighted_consensus
    from curation.stats.agreement import krippendorff_alpha
    from curation.stats.judgments import Ratings
    from curation.loading import comparison_images_load, pairwise_judgments_load
    from curation.stats.rater_bias import bradley_terry_left_advantage
    from curation.models import FilterRun
    from curation.rules import FilterRules
    from curation.services import filter_run_execute
    from seed import million_judgments, project_with_comparisons

    project = project_with_comparisons(slug="curation", comparisons=args.comparisons)
    million_judgments(project=project, annotators=args.annotators)

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
