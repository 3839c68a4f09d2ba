"""Adaptive collection through the platform itself (issue 16, "done when"), on PostgreSQL.

For each crowd composition, one simulated world (curation/adaptive_simulation.py) is judged in two
projects: fixed overlap 5, and adaptive collection (min 2, max 9, target 0.95). Every judgment
is leased by the assignment code and stored by the submit service; the adaptive refresh runs
every 500 judgments as the Celery task would; accuracy at each checkpoint is that of a real
filter run with the default rules (crowd-kit Dawid-Skene) against the known truth, over every
unit (curation/crowd_replay.py).

One JSON line per figure and composition: judgments saved at fixed overlap 5's accuracy (%),
accuracy gain at fixed overlap 5's budget (points), both curves. bench/adaptive_collection_bench.py
is the same comparison on the numpy replay of the policy (more units, more seeds, seconds).
"""
import argparse
import dataclasses
import time

from common import report, setup_django

FIXED_OVERLAP = 5
DEFAULT_COMPOSITIONS = "honest,mixed,spammers,position_biased,hard_items"


def compare(name: str, *, units: int, seed: int, settings: dict, refresh_every: int, step: int) -> dict:
    from django.contrib.auth import get_user_model

    from curation.adaptive_simulation import crowd_world
    from curation.crowd_replay import replay, replay_project
    from curation.simulation import COMPOSITIONS

    world = crowd_world(dataclasses.replace(COMPOSITIONS[name], units=units), seed=seed)
    creator = get_user_model().objects.create_user(f"replay-{name}-{seed}")
    budget = FIXED_OVERLAP * units
    grid = range(step, budget + 1, step)
    fixed = replay(replay_project(world, slug=f"{name}-{seed}-fixed", creator=creator, overlap=FIXED_OVERLAP),
                   seed=seed, budget=budget, checkpoints=grid, refresh_every=refresh_every)
    adaptive = replay(replay_project(world, slug=f"{name}-{seed}-adaptive", creator=creator, **settings),
                      seed=seed, budget=budget, checkpoints=grid, refresh_every=refresh_every)
    reached = next((judgments for judgments, accuracy in adaptive.curve if accuracy >= fixed.accuracy), None)
    return {"fixed": fixed, "adaptive": adaptive, "reached": reached, "budget": budget}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--compositions", default=DEFAULT_COMPOSITIONS)
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--min-votes", type=int, default=2)
    parser.add_argument("--max-votes", type=int, default=9)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--refresh-every", type=int, default=500)
    parser.add_argument("--step", type=int, default=0, help="judgments between checkpoints (default: units / 5)")
    args = parser.parse_args()
    setup_django(fresh_database=True)
    settings = {"collection": "adaptive", "min_votes": args.min_votes, "max_votes": args.max_votes,
                "confidence_target": args.target}
    step = args.step or max(1, args.units // 5)
    for name in (n for n in args.compositions.split(",") if n):
        started = time.perf_counter()
        result = compare(name, units=args.units, seed=args.seed, settings=settings, refresh_every=args.refresh_every,
                         step=step)
        fixed, adaptive, reached, budget = result["fixed"], result["adaptive"], result["reached"], result["budget"]
        common = {"composition": name, "units": args.units, "seed": args.seed, "database": "postgresql",
                  "settings": {k: v for k, v in settings.items() if k != "collection"}}
        saved = 100 * (1 - reached / budget) if reached is not None else float("nan")
        report("adaptive_platform_judgments_saved", saved, "% of fixed overlap 5's judgments", target=">= 30",
               fixed5_accuracy=round(fixed.accuracy, 4), fixed5_judgments=fixed.judgments,
               adaptive_judgments_at_that_accuracy=reached, **common)
        report("adaptive_platform_accuracy_gain", 100 * (adaptive.accuracy - fixed.accuracy),
               "accuracy points at fixed overlap 5's budget", target=">= 2", fixed5_accuracy=round(fixed.accuracy, 4),
               adaptive_accuracy=round(adaptive.accuracy, 4), adaptive_judgments=adaptive.judgments,
               max_votes_on_a_unit=int(adaptive.votes_per_unit.max()), refreshes=adaptive.refreshes, **common)
        report("adaptive_platform_curves", len(adaptive.curve), "checkpoints (filter-run accuracy over all units)",
               fixed5=[[j, round(a, 4)] for j, a in fixed.curve], adaptive=[[j, round(a, 4)] for j, a in adaptive.curve],
               seconds={"fixed": round(fixed.seconds, 1), "adaptive": round(adaptive.seconds, 1),
                        "total": round(time.perf_counter() - started, 1)}, **common)


if __name__ == "__main__":
    main()
