"""The rules of a filter run, with their defaults and checks (a bad value names the rule): the
dataclass the code reads, and the serializer that checks them and types them in the API's schema."""
from dataclasses import asdict, dataclass

from rest_framework import serializers

from curation.json_fields import (
    ChoiceOfField,
    FlagField,
    JsonObjectSerializer,
    NumberField,
    OpenUnitIntervalField,
    TextField,
    WholeNumberField,
    checked_json,
)


# crowd-kit's worker-weighted models, its pairwise NoisyBT, and plain plurality.
CONSENSUS_METHODS = ("dawid_skene", "one_coin_ds", "glad", "mace", "noisy_bt", "majority")
CONSENSUS_LABELS = {"dawid_skene": "Dawid-Skene", "one_coin_ds": "one-coin Dawid-Skene", "glad": "GLAD",
                    "mace": "MACE", "noisy_bt": "noisy Bradley-Terry (NoisyBT)", "majority": "majority vote"}


def consensus_description(method: str, settings: dict) -> str:
    """Which aggregator ran, and how it treated ties, in words for the report."""
    label = CONSENSUS_LABELS.get(method, method)
    if method == "majority":
        return f"{label}, tie as a third answer"
    if settings.get("ties") == "share":
        return f"{label} (crowd-kit), a tie where the tie share is above {settings.get('tie_threshold', 0.5):g}"
    return f"{label} (crowd-kit), tie as a third answer"


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
        """The rules `data` asks for, defaults filled in. Raises ValidationError({"rules": ...})
        naming each refused rule (FilterRulesSerializer's checks) or unknown key."""
        return cls(**checked_json(FilterRulesSerializer, data, key="rules"))

    def as_json(self) -> dict:
        return asdict(self)


def _default(name: str):
    return getattr(FilterRules, name)


_BETWEEN_0_AND_1 = "must lie between 0 and 1"
_TRUE_OR_FALSE = "must be true or false"


class FilterRulesSerializer(JsonObjectSerializer):
    """The rules of a filter run; every key is optional and defaults as docs/curation.md says."""

    noun = "rule"

    aspect = TextField(default=_default("aspect"), why="must be an aspect key",
                       help_text="Which pairwise aspect is filtered: overall or one of the project's aspect keys.")
    consensus = ChoiceOfField(
        choices=[(key, CONSENSUS_LABELS[key]) for key in CONSENSUS_METHODS], default=_default("consensus"),
        why=f"must be one of {', '.join(CONSENSUS_METHODS)}",
        help_text="The aggregator: crowd-kit's dawid_skene, one_coin_ds, glad, mace or noisy_bt, or plain majority "
                  "vote; the report's consensus says which ran and how it treated ties.")
    ties = ChoiceOfField(
        choices=["model", "share"], default=_default("ties"), why="must be model or share",
        help_text="model: a tie is a third answer to the model; share: a unit is a tie when its tie share exceeds "
                  "tie_threshold, and the model weighs a / b only.")
    min_judgments = WholeNumberField(
        min_value=1, default=_default("min_judgments"), why="must be a whole number of at least 1",
        help_text="Human judgments a unit needs, after excluded raters are left out.")
    min_confidence = NumberField(
        min_value=0, max_value=1, default=_default("min_confidence"), why=_BETWEEN_0_AND_1,
        help_text="Posterior (weighted models) or vote-margin share (majority) a verdict needs to be kept; 0 keeps "
                  "every verdict.")
    drop_ties = FlagField(default=_default("drop_ties"), why=_TRUE_OR_FALSE, help_text="Drop units called a tie.")
    tie_threshold = NumberField(
        min_value=0, max_value=1, default=_default("tie_threshold"), why=_BETWEEN_0_AND_1,
        help_text="With ties=share: the tie share above which a unit is a tie.")
    exclude_position_biased = FlagField(
        default=_default("exclude_position_biased"), why=_TRUE_OR_FALSE,
        help_text="Leave out raters whose left share fails the binomial test (the report flags them either way).")
    position_bias_p = OpenUnitIntervalField(
        default=_default("position_bias_p"), why="must lie strictly between 0 and 1",
        help_text="Level of the binomial test for always choosing one side.")
    min_rater_agreement = NumberField(
        min_value=0, max_value=1, allow_null=True, default=_default("min_rater_agreement"),
        why=f"{_BETWEEN_0_AND_1}, or be null",
        help_text="Leave-one-out agreement below which a rater is left out; null: off.")
    min_gold_accuracy = NumberField(
        min_value=0, max_value=1, allow_null=True, default=_default("min_gold_accuracy"),
        why=f"{_BETWEEN_0_AND_1}, or be null",
        help_text="Accuracy on gold units below which a rater (with min_gold_answers gold answers) is left out; "
                  "null: off.")
    min_gold_answers = WholeNumberField(
        min_value=1, default=_default("min_gold_answers"), why="must be a whole number of at least 1",
        help_text="Gold answers a rater needs before min_gold_accuracy applies.")
    drop_likely_wrong = FlagField(
        default=_default("drop_likely_wrong"), why=_TRUE_OR_FALSE,
        help_text="Drop the units the machine judges' preference strength ranks likely wrong (Secrets of RLHF II).")
    likely_wrong_pct = NumberField(
        min_value=0, max_value=100, default=_default("likely_wrong_pct"), why="must lie between 0 and 100",
        help_text="Percentage of units, weakest preference strength first, flagged likely wrong.")
    ambiguous_pct = NumberField(
        min_value=0, max_value=100, default=_default("ambiguous_pct"), why="must lie between 0 and 100",
        help_text="Percentage of units after the likely wrong ones flagged ambiguous; with likely_wrong_pct at most "
                  "100.")
    suspend_excluded_raters = FlagField(
        default=_default("suspend_excluded_raters"), why=_TRUE_OR_FALSE,
        help_text="Suspend the people the run leaves out (researchers reinstate them).")
    check_image_files = FlagField(
        default=_default("check_image_files"), why=_TRUE_OR_FALSE,
        help_text="Drop units whose original or preview file is missing from storage (one storage listing per "
                  "folder of keys).")
    bootstrap_resamples = WholeNumberField(
        min_value=0, max_value=10_000, default=_default("bootstrap_resamples"),
        why="must be a whole number from 0 to 10000", help_text="Bootstrap resamples of the alpha intervals.")
    seed = WholeNumberField(min_value=0, default=_default("seed"), why="must be a whole number of at least 0",
                            help_text="Seed of every random step: the same rules on the same judgments give the "
                                      "same verdicts.")

    def validate(self, attrs):
        if attrs["likely_wrong_pct"] + attrs["ambiguous_pct"] > 100:
            raise serializers.ValidationError({"ambiguous_pct": "likely_wrong_pct + ambiguous_pct must be at most 100 "
                                                                f"(got {attrs['ambiguous_pct']!r})"})
        return attrs
