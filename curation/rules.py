"""The rules of a filter run, with their defaults and checks (a bad value names the rule)."""
from dataclasses import asdict, dataclass, fields

from django.core.exceptions import ValidationError


# The worker-weighted models of crowd-kit (ties decided outside them) and plain plurality.
CONSENSUS_METHODS = ("dawid_skene", "one_coin_ds", "glad", "mace", "majority")


@dataclass(frozen=True)
class FilterRules:
    # The defaults were chosen by measurement on simulated crowds (curation/simulation.py,
    # bench/curation_defaults_bench.py; why each is what it is: docs/curation.md). In short: every
    # unit with a judgment gets a consensus and its confidence; dropping is an explicit rule.
    aspect: str = "overall"
    consensus: str = "dawid_skene"  # one of CONSENSUS_METHODS
    ties: str = "model"  # "model": tie is a third answer to the model; "share": tie_threshold decides
    min_judgments: int = 1  # human judgments a unit needs (after excluded raters are left out)
    min_confidence: float = 0.0  # posterior (weighted) or vote-margin share (majority) to keep a verdict
    drop_ties: bool = False
    tie_threshold: float = 0.5  # ties="share": tie share above which a unit is a tie
    exclude_position_biased: bool = False  # Dawid-Skene already gives a side-clicker's votes no weight
    position_bias_p: float = 0.001  # binomial test level for "always one side"
    min_rater_agreement: float | None = None  # leave-one-out agreement below which a rater is left out
    min_gold_accuracy: float | None = None  # accuracy on gold units below which a rater is left out
    min_gold_answers: int = 5  # gold answers a rater needs before min_gold_accuracy applies
    drop_likely_wrong: bool = False  # drop units the machine judges' preference strength ranks weakest
    likely_wrong_pct: float = 20.0  # Secrets of RLHF II: the weakest ~20% are likely wrong...
    ambiguous_pct: float = 20.0  # ...and the next ~20% ambiguous
    suspend_excluded_raters: bool = False  # suspend the raters these rules leave out (researchers reinstate)
    check_image_files: bool = False  # drop units whose image files are missing from storage (lists storage folders)
    bootstrap_resamples: int = 200
    seed: int = 0

    @classmethod
    def from_json(cls, data: dict | None) -> "FilterRules":
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValidationError({"rules": f"unknown rule(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"})
        rules = cls(**data)
        rules.check()
        return rules

    def check(self) -> None:
        def bad(name, why):
            raise ValidationError({"rules": f"{name}: {why} (got {getattr(self, name)!r})"})

        if self.consensus not in CONSENSUS_METHODS:
            bad("consensus", f"must be one of {', '.join(CONSENSUS_METHODS)}")
        if self.ties not in ("model", "share"):
            bad("ties", "must be model or share")
        if not isinstance(self.min_judgments, int) or isinstance(self.min_judgments, bool) or self.min_judgments < 1:
            bad("min_judgments", "must be a whole number of at least 1")
        for name in ("min_confidence", "tie_threshold"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
                bad(name, "must lie between 0 and 1")
        if not isinstance(self.position_bias_p, (int, float)) or not 0 < self.position_bias_p < 1:
            bad("position_bias_p", "must lie strictly between 0 and 1")
        if self.min_rater_agreement is not None and (
                not isinstance(self.min_rater_agreement, (int, float)) or not 0 <= self.min_rater_agreement <= 1):
            bad("min_rater_agreement", "must lie between 0 and 1, or be null")
        if self.min_gold_accuracy is not None and (
                not isinstance(self.min_gold_accuracy, (int, float)) or not 0 <= self.min_gold_accuracy <= 1):
            bad("min_gold_accuracy", "must lie between 0 and 1, or be null")
        if not isinstance(self.min_gold_answers, int) or isinstance(self.min_gold_answers, bool) \
                or self.min_gold_answers < 1:
            bad("min_gold_answers", "must be a whole number of at least 1")
        if not isinstance(self.bootstrap_resamples, int) or not 0 <= self.bootstrap_resamples <= 10_000:
            bad("bootstrap_resamples", "must be a whole number from 0 to 10000")
        for name in ("likely_wrong_pct", "ambiguous_pct"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 100:
                bad(name, "must lie between 0 and 100")
        if self.likely_wrong_pct + self.ambiguous_pct > 100:
            bad("ambiguous_pct", "likely_wrong_pct + ambiguous_pct must be at most 100")
        for name in ("drop_ties", "exclude_position_biased", "suspend_excluded_raters", "drop_likely_wrong",
                     "check_image_files"):
            if not isinstance(getattr(self, name), bool):
                bad(name, "must be true or false")

    def as_json(self) -> dict:
        return asdict(self)
