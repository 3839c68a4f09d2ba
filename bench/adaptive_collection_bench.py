"""Adaptive collection (issue 16) against fixed overlap 5, on simulated crowds with known truth.

Each crowd composition's world (curation/adaptive_simulation.py) is replayed twice with the same
raters arriving in the same random order: fixed overlap 5 (min = max = 5) and the adaptive policy.
Final labels at every checkpoint (a tenth of the units' count in judgments) come from the
smoothed Dawid-Skene of curation/adaptive.py over every vote so far, for both arms; the
headline budgets are re-scored with the platform's aggregator (crowd-kit Dawid-Skene, ties as a
third answer: FilterRules' default) in `platform_aggregator`. Curves are averaged over seeds.

Per composition, one JSON line per figure: judgments saved at fixed-5's accuracy (%), accuracy
gain at fixed-5's budget (points), and both curves ([judgments, accuracy]). `--sweep` replays
a grid of settings instead (one line per setting and composition). No database, no Django.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import report  # noqa: E402

from curation.adaptive import AdaptiveSettings  # noqa: E402
from curation.adaptive_simulation import (  # noqa: E402
    MachineJudges,
    accuracy_at,
    collect,
    crowd_world,
    judgments_to_reach,
)
from curation.simulation import COMPOSITIONS  # noqa: E402

FIXED_OVERLAP = 5
DEFAULT_COMPOSITIONS = "honest,mixed,spammers,position_biased,hard_items"
SWEEP = [(3, 9, 0.95), (2, 7, 0.95), (2, 9, 0.9), (2, 9, 0.95), (2, 9, 0.97), (1, 9, 0.95)]


def platform_accuracy(world, run, judgments: int) -> float:
    """Accuracy of crowd-kit's Dawid-Skene (the platform's default consensus) on the run's first
    `judgments` votes; undecided units count as wrong."""
    from curation.stats.aggregation import weighted_consensus
    from curation.stats.judgments import PairwiseJudgments

    votes = PairwiseJudgments.from_arrays(unit=run.unit[:judgments], rater=run.rater[:judgments],
                                          choice=run.choice[:judgments], n_units=world.n_units,
                                          n_raters=world.n_raters)
    return float((weighted_consensus(votes, method="dawid_skene").verdict == world.truth).mean())


def platform_reach(runs, fixed_accuracy: float, reached: int | None, units: int) -> int | None:
    """The judgments at which the adaptive runs' seed-mean accuracy under the platform's aggregator
    first reaches `fixed_accuracy`, scanned in steps of a tenth of the units from one step
    before `reached` (the curve's answer) up to fixed-5's budget; None if not reached there."""
    step = units // 10
    start = max(step, (reached or FIXED_OVERLAP * units) - step)
    for judgments in range(start, FIXED_OVERLAP * units + 1, step):
        if np.mean([platform_accuracy(w, a, judgments) for w, _, a in runs]) >= fixed_accuracy:
            return judgments
    return None


def compare(name: str, settings: AdaptiveSettings, seeds: list[int], machines: MachineJudges, refresh_every: int):
    """Both arms on every seed; the seed-averaged curves and the headline figures."""
    composition = COMPOSITIONS[name]
    units = composition.units
    step = units // 10
    grid = np.concatenate([np.arange(step, FIXED_OVERLAP * units + 1, step),  # fine up to fixed-5's budget
                           np.arange(FIXED_OVERLAP * units + 5 * step, settings.max_votes * units + 1, 5 * step)])
    fixed_settings = AdaptiveSettings(min_votes=FIXED_OVERLAP, max_votes=FIXED_OVERLAP, confidence_target=0.99)
    runs = []
    for seed in seeds:
        world = crowd_world(composition, seed=seed, machines=machines)
        fixed = collect(world, fixed_settings, seed=seed, refresh_every=refresh_every, checkpoints=grid)
        adaptive = collect(world, settings, seed=seed, refresh_every=refresh_every, checkpoints=grid)
        runs.append((world, fixed, adaptive))
    budget = FIXED_OVERLAP * units
    fixed_curve = np.array([[x, np.mean([accuracy_at(f.curve, x) for _, f, _ in runs])] for x in grid if x <= budget])
    adaptive_end = max(a.judgments for _, _, a in runs)
    adaptive_curve = np.array([[x, np.mean([accuracy_at(a.curve, x) for _, _, a in runs])]
                               for x in np.append(grid[grid < adaptive_end], adaptive_end)])
    fixed_accuracy = float(fixed_curve[-1, 1])
    return runs, fixed_curve, adaptive_curve, fixed_accuracy, judgments_to_reach(adaptive_curve, fixed_accuracy)


def headline(name, settings, seeds, machines, refresh_every) -> None:
    started = time.perf_counter()
    runs, fixed_curve, adaptive_curve, fixed_accuracy, reached = compare(name, settings, seeds, machines, refresh_every)
    units = COMPOSITIONS[name].units
    budget = FIXED_OVERLAP * units
    gain = accuracy_at(adaptive_curve, budget) - fixed_accuracy
    platform = {
        "fixed5": np.mean([platform_accuracy(w, f, f.judgments) for w, f, _ in runs]),
        "adaptive_at_fixed5_budget": np.mean([platform_accuracy(w, a, budget) for w, _, a in runs]),
    }
    platform = {key: round(float(value), 4) for key, value in platform.items()}
    platform["adaptive_judgments_at_fixed5_accuracy"] = platform_reach(runs, platform["fixed5"], reached, units)
    stop = {"judgments": round(float(np.mean([a.judgments for _, _, a in runs])), 1),
            "accuracy": round(float(np.mean([a.curve[-1, 1] for _, _, a in runs])), 4),
            "estimated_accuracy": round(float(np.mean([a.estimated_accuracy for _, _, a in runs])), 4),
            "max_votes_on_a_unit": int(max(a.votes_per_unit(units).max() for _, _, a in runs))}
    common = {"composition": name, "seeds": seeds, "units": units, "settings": settings.as_json()}
    saved = 100 * (1 - reached / budget) if reached is not None else float("nan")
    report("adaptive_judgments_saved", saved, "% of fixed overlap 5's judgments", target=">= 30",
           reached_fixed5_accuracy=reached is not None, fixed5_accuracy=round(fixed_accuracy, 4),
           fixed5_judgments=budget, adaptive_judgments_at_that_accuracy=reached, platform_aggregator=platform,
           **common)
    report("adaptive_accuracy_gain", 100 * gain, "accuracy points at fixed overlap 5's budget", target=">= 2",
           fixed5_accuracy=round(fixed_accuracy, 4), adaptive_accuracy=round(fixed_accuracy + gain, 4),
           stopped_at_target=stop, platform_aggregator=platform, **common)
    report("adaptive_accuracy_curves", len(adaptive_curve), "checkpoints (accuracy over all units)",
           fixed5=[[int(x), round(float(y), 4)] for x, y in fixed_curve],
           adaptive=[[int(x), round(float(y), 4)] for x, y in adaptive_curve],
           adaptive_estimated=[[int(x), round(float(np.mean([estimate_at(a, x)[0] for _, _, a in runs])), 4)]
                               for x in adaptive_curve[:, 0]],
           seconds=round(time.perf_counter() - started, 1), **common)
    # What the researcher view would have said once every unit had its minimum, against what came.
    checkpoint = settings.min_votes * units
    expected = float(np.mean([estimate_at(a, checkpoint)[1] for _, _, a in runs]))
    actual = float(np.mean([a.judgments - checkpoint for _, _, a in runs]))
    report("adaptive_judgments_left_estimate", expected / actual if actual else float("nan"),
           "expected / actual judgments left", at_judgments=checkpoint, expected=round(expected),
           actual=round(actual), **common)


def estimate_at(run, judgments: int) -> tuple[float, float]:
    """The run's own estimated accuracy and expected judgments left at the checkpoint `judgments`
    (its last row if it ended before)."""
    rows = run.curve[run.curve[:, 0] <= judgments]
    return float(rows[-1, 2]), float(rows[-1, 3])


def sweep(name, seeds, machines, refresh_every) -> None:
    units = COMPOSITIONS[name].units
    for min_votes, max_votes, target in SWEEP:
        settings = AdaptiveSettings(min_votes=min_votes, max_votes=max_votes, confidence_target=target)
        runs, _, adaptive_curve, fixed_accuracy, reached = compare(name, settings, seeds, machines, refresh_every)
        saved = 100 * (1 - reached / (FIXED_OVERLAP * units)) if reached is not None else float("nan")
        report("adaptive_sweep_judgments_saved", saved, "% of fixed overlap 5's judgments", target=">= 30",
               accuracy_gain_points=round(100 * (accuracy_at(adaptive_curve, FIXED_OVERLAP * units)
                                                 - fixed_accuracy), 2),
               stop_judgments=round(float(np.mean([a.judgments for _, _, a in runs])), 1),
               stop_accuracy=round(float(np.mean([a.curve[-1, 1] for _, _, a in runs])), 4),
               composition=name, seeds=seeds, settings=settings.as_json())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="11,12")
    parser.add_argument("--compositions", default=DEFAULT_COMPOSITIONS)
    parser.add_argument("--min-votes", type=int, default=2)
    parser.add_argument("--max-votes", type=int, default=9)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--refresh-every", type=int, default=500, help="judgments between reliability refreshes")
    parser.add_argument("--machine-judges", type=int, default=3, help="simulated machine judges per unit (0: none)")
    parser.add_argument("--sweep", action="store_true", help="replay a grid of settings instead of the headline")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s]
    machines = MachineJudges(count=args.machine_judges)
    settings = AdaptiveSettings(min_votes=args.min_votes, max_votes=args.max_votes,
                                confidence_target=args.target).validate()
    for name in (n for n in args.compositions.split(",") if n):
        if args.sweep:
            sweep(name, seeds, machines, args.refresh_every)
        else:
            headline(name, settings, seeds, machines, args.refresh_every)


if __name__ == "__main__":
    main()
