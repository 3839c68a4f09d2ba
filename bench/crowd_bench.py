"""50 simulated annotators at once against PostgreSQL, through Django's request stack: judgments
per second on this machine's cores, and the assignment rules checked afterwards.

Each annotator behaves as the workspace does: lease a few units (5), then send the answers
(`--submit-batch`: 5 in one request, as the page does with what queued up while a request was
in flight; 1 for one request per key press).
"""
import argparse
import multiprocessing
import os
import threading
import time
import uuid

from common import report, setup_django

ANNOTATORS = 50


def annotator_process(slug, usernames, batch, submit_batch, queue):
    setup_django(fresh_database=False)
    from django.db import connection
    from django.test import Client

    from django.contrib.auth import get_user_model

    done = []

    def annotate(username):
        client = Client()
        client.force_login(get_user_model().objects.get(username=username))
        count = 0
        while True:
            units = client.post(f"/api/v1/projects/{slug}/work/next/", {"task_type": "pairwise", "count": batch},
                                content_type="application/json").json()["units"]
            if not units:
                break
            submissions = [{"idempotency_key": uuid.uuid4().hex, "assignment": u["assignment"], "choice": "left",
                            "latency_ms": 900} for u in units]
            for start in range(0, len(submissions), submit_batch):
                response = client.post(f"/api/v1/projects/{slug}/work/submit/",
                                       {"submissions": submissions[start:start + submit_batch]},
                                       content_type="application/json")
                count += sum(r["status"] == "stored" for r in response.json()["results"])
        done.append(count)
        connection.close()

    threads = [threading.Thread(target=annotate, args=(name,)) for name in usernames]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put(sum(done))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--comparisons", type=int, default=6000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--batch", type=int, default=5, help="units leased per work/next call")
    parser.add_argument("--submit-batch", type=int, default=5, help="submissions per work/submit call")
    args = parser.parse_args()
    setup_django(fresh_database=True)
    from collections import Counter

    from django.contrib.auth import get_user_model

    from annotation.models import Assignment, Membership, PreferenceJudgment, WorkUnit
    from seed import project_with_comparisons

    overlap = 3
    project = project_with_comparisons(slug="crowd", comparisons=args.comparisons, overlap=overlap)
    names = [f"crowd{i}" for i in range(ANNOTATORS)]
    for name in names:
        Membership.objects.create(project=project, user=get_user_model().objects.create_user(name), role="annotator")
    from django.db import connections
    connections.close_all()

    queue = multiprocessing.Queue()
    groups = [names[i::args.processes] for i in range(args.processes)]
    procs = [multiprocessing.Process(target=annotator_process, args=(project.slug, g, args.batch, args.submit_batch, queue)) for g in groups]
    started = time.perf_counter()
    for p in procs:
        p.start()
    stored = sum(queue.get() for _ in procs)
    elapsed = time.perf_counter() - started
    for p in procs:
        p.join()

    units = list(WorkUnit.objects.filter(project=project).values_list("id", "done", "leased", "filled"))
    completed = Counter(Assignment.objects.filter(project=project, status="completed").values_list("unit_id", flat=True))
    pairs = Counter(Assignment.objects.filter(project=project).values_list("unit_id", "annotator_id"))
    violations = sum(1 for _, done, leased, filled in units if done > overlap or done != completed.get(_, 0)
                     or leased != 0 or filled != done)
    violations += sum(1 for n in pairs.values() if n > 1)
    violations += sum(1 for _, done, _, _ in units if done != overlap)  # lost units
    violations += abs(PreferenceJudgment.objects.filter(project=project).count() - stored)
    context = {"annotators": ANNOTATORS, "processes": args.processes, "lease_batch": args.batch,
               "submit_batch": args.submit_batch,
               "judgments": stored, "cores": os.cpu_count(), "database": "postgresql"}
    report("crowd_judgments_per_second", stored / elapsed, "judgments/s", target=">= 500", **context)
    report("crowd_rule_violations", violations, "count", target="0", **context)


if __name__ == "__main__":
    main()
