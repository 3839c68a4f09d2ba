"""Server side of the annotator loop on PostgreSQL: lease the next unit + submit one judgment,
through Django's full request stack (middleware, session auth, CSRF, DRF), at 10,000 and at
1,000,000 comparisons. Target: p50 <= 10 ms, p95 <= 25 ms at 1M, at most 1.5x the 10k time.
"""
import argparse
import statistics
import time
import uuid

from common import report, setup_django


def run_loop(client, slug, iterations):
    timings = []
    for _ in range(iterations):
        started = time.perf_counter()
        response = client.post(f"/api/v1/projects/{slug}/work/next/", {"task_type": "pairwise", "count": 1},
                               content_type="application/json")
        unit = response.json()["units"][0]
        response = client.post(f"/api/v1/projects/{slug}/work/submit/", {"submissions": [{
            "idempotency_key": uuid.uuid4().hex, "assignment": unit["assignment"], "choice": "left",
            "latency_ms": 1500}]}, content_type="application/json")
        assert response.status_code == 200, response.content
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--collections", default="fixed,adaptive",
                        help="fixed overlap 3, and/or adaptive collection (min 2, max 9, target 0.95)")
    args = parser.parse_args()
    setup_django(fresh_database=True)

    for collection in args.collections.split(","):
        run_collection(args, collection)


def run_collection(args, collection):
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from annotation.models import Membership
    from seed import project_with_comparisons

    adaptive = dict(collection="adaptive", min_votes=2, max_votes=9, confidence_target=0.95) \
        if collection == "adaptive" else {}
    results = {}
    for size in [int(s) for s in args.sizes.split(",")]:
        project = project_with_comparisons(slug=f"loop-{collection}-{size}", comparisons=size, **adaptive)
        # A campaign under way: a fifth of the units already hold one or two judgments (adaptive:
        # with the priorities of units holding that many votes of no evidence).
        with connection.cursor() as cursor:
            cursor.execute("UPDATE annotation_workunit SET done = 1 + (id %% 2), filled = 1 + (id %% 2) "
                           "WHERE project_id = %s AND id %% 5 = 0", [project.id])
            if adaptive:
                from annotation.adaptive_collection import _priorities, _reliability
                import numpy as np

                reliability, _ = _reliability(project)
                one, two = _priorities(project, reliability, np.array([1, 2]), np.zeros((2, 3)))[0].tolist()
                cursor.execute("UPDATE annotation_workunit SET priority = CASE WHEN done = 1 THEN %s ELSE %s END "
                               "WHERE project_id = %s AND id %% 5 = 0", [one, two, project.id])
            cursor.execute("ANALYZE annotation_workunit")
        user = get_user_model().objects.create_user(f"loop-{collection}-{size}", password="x")
        Membership.objects.create(project=project, user=user, role="annotator")
        client = Client()
        client.force_login(user)
        run_loop(client, project.slug, 30)  # warm connections and caches
        timings = sorted(run_loop(client, project.slug, args.iterations))
        p50, p95 = statistics.median(timings), timings[int(len(timings) * 0.95)]
        results[size] = p50
        context = {"comparisons": size, "iterations": args.iterations, "database": "postgresql",
                   "collection": collection}
        report("annotator_loop_p50_ms", p50, "ms", target="<= 10", **context)
        report("annotator_loop_p95_ms", p95, "ms", target="<= 25", **context)
    if len(results) >= 2:
        small, large = min(results), max(results)
        report("annotator_loop_p50_growth", results[large] / results[small], "x", target="<= 1.5",
               small=small, large=large, collection=collection)


if __name__ == "__main__":
    main()
