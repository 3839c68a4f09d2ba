"""The default filter rules on simulated crowds with known truth (curation/simulation.py), next to
crowd-kit's aggregators run directly on the same judgments, and next to the defaults before
they were chosen by measurement (and NoisyBT, the pairwise model, through the platform). One JSON line per crowd composition and seed: accuracy over all
units (undecided counts as wrong) and coverage (the share of units given a verdict).

The defaults were chosen on seed 1; the figures here are seeds 11 and 12 (held out). No database.
"""
import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from common import report  # noqa: E402

# The rules every filter run used by default until they were measured.
OLD_DEFAULTS = {"ties": "share", "min_judgments": 2, "min_confidence": 0.6, "exclude_position_biased": True,
                "min_rater_agreement": 0.55}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="11,12")
    parser.add_argument("--compositions", default="")
    args = parser.parse_args()
    import django

    django.setup()
    from crowdkit.aggregation import GLAD, MACE, DawidSkene, MajorityVote, OneCoinDawidSkene

    from curation.rule_application import consensus_under_rules
    from curation.rules import FilterRules
    from curation.simulation import COMPOSITIONS, crowdkit_verdicts, simulate

    names = [n for n in args.compositions.split(",") if n] or list(COMPOSITIONS)
    for seed in (int(s) for s in args.seeds.split(",")):
        for name in names:
            crowd = simulate(COMPOSITIONS[name], seed=seed)
            started = time.perf_counter()
            default = consensus_under_rules(crowd.judgments, FilterRules())
            default_s = time.perf_counter() - started
            old = consensus_under_rules(crowd.judgments, FilterRules.from_json(OLD_DEFAULTS))
            references = {label: round(crowd.accuracy(crowdkit_verdicts(crowd, model)), 4) for label, model in [
                ("dawid_skene", DawidSkene(n_iter=100)), ("one_coin_ds", OneCoinDawidSkene(n_iter=100)),
                ("glad", GLAD(n_iter=100)), ("mace", MACE(n_iter=100, random_state=0)),
                ("majority", MajorityVote())]}
            noisy_bt = consensus_under_rules(crowd.judgments, FilterRules(consensus="noisy_bt"),
                                             unit_images=crowd.unit_images)
            references["noisy_bt"] = round(crowd.accuracy(noisy_bt.verdict), 4)  # the platform's, on crowd-kit's model
            best = max(v for k, v in references.items() if k not in ("majority", "noisy_bt"))
            accuracy = crowd.accuracy(default.verdict)
            report("default_rules_accuracy", accuracy, "share of all units",
                   target=f">= best crowd-kit aggregator - 0.01 ({best - 0.01:.4f})", composition=name, seed=seed,
                   units=crowd.composition.units, judgments=len(crowd.judgments),
                   coverage=round(float((default.verdict >= 0).mean()), 4), seconds=round(default_s, 2),
                   old_defaults_accuracy=round(crowd.accuracy(old.verdict), 4),
                   old_defaults_coverage=round(float((old.verdict >= 0).mean()), 4),
                   crowdkit=references)


if __name__ == "__main__":
    main()
