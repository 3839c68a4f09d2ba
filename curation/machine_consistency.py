"""Machine-judge consistency: does a model judge agree with itself, with its own scores,
with other judges and with humans?

- `swap_agreement`: the verdict survives swapping which image is shown first, and the
  judge's share of first-shown picks with an exact binomial test.
- (self-consistency over k samples of one query lives in `curation.judge_samples`.)
- `score_pair_agreement`: the pairwise verdict against the order of the judge's own scores.
- `preference_strength`: Secrets of RLHF II (Wang et al. 2024, section 2): per pair,
  the mean and standard deviation across judges of the z-normalised score difference;
  the lowest percentiles are flagged "likely wrong" and the next "ambiguous".
- `transitivity`: directed 3-cycles in each prompt's majority-preference graph.
- `human_machine_agreement`: accuracy against the human consensus (Wilson interval) and
  PLCC / SRCC of machine scores against mean human scores per image.

Verdicts are CHOICE_A / CHOICE_B / CHOICE_TIE in the comparison's canonical order, as in
`curation.judgments`. Structurally broken arrays raise `CurationInputError`; degenerate
data returns NaN figures with a `message`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from scipy.stats import ConstantInputWarning, binomtest, pearsonr, spearmanr
from statsmodels.stats.proportion import proportion_confint

from curation.judgments import (
    CHOICE_A,
    CHOICE_B,
    CHOICE_TIE,
    CurationInputError,
    as_codes,
    integer_array,
    last_per_unit_rater,
)


def _verdicts(values, *, name: str = "verdict", allow_undecided: bool = False) -> np.ndarray:
    """`values` as int64 verdict codes (0 a, 1 b, 2 tie; -1 undecided where allowed), or raise."""
    array = integer_array(values, name=name)
    low = -1 if allow_undecided else 0
    if array.size and (array.min() < low or array.max() > CHOICE_TIE):
        allowed = "-1 (undecided), 0 (a), 1 (b) or 2 (tie)" if allow_undecided else "0 (a), 1 (b) or 2 (tie)"
        raise CurationInputError(f"{name} codes must be {allowed}")
    return array


def _same_length(**arrays: np.ndarray) -> int:
    sizes = {name: array.shape[0] for name, array in arrays.items()}
    if len(set(sizes.values())) > 1:
        raise CurationInputError(f"arrays must have equal lengths, got {sizes}")
    return next(iter(sizes.values()))


def _share(numerator, denominator) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.asarray(denominator) > 0, np.asarray(numerator) / np.asarray(denominator), np.nan)


# --- one judge against itself -----------------------------------------------------


@dataclass(frozen=True)
class SwapAgreement:
    """Swap agreement of one judge, and its first-position bias.

    `agreement` is the share of units (per aspect: unit-aspect keys) asked in both
    orders whose canonical verdict was the same both times; `per_aspect` holds it per
    aspect code (NaN where an aspect has no swapped unit). `first_share` is the share of
    side verdicts (ties excluded) naming the image shown first, `p_value` the exact
    two-sided binomial test against 0.5, `flagged` p < `alpha_level`.
    """

    agreement: float
    n_swapped: int
    n_unpaired: int
    per_aspect: np.ndarray
    n_swapped_per_aspect: np.ndarray
    first_share: float
    n_sided: int
    p_value: float
    flagged: bool
    alpha_level: float
    message: str | None = None


def swap_agreement(*, unit, shown_first_is_a, verdict, aspect=None, alpha_level: float = 0.001) -> SwapAgreement:
    """Share of units whose verdict survives swapping the sides, and first-position bias.

    One row per query of one judge: the unit, whether image a was shown first, and the
    verdict in canonical a / b / tie terms. A unit (or unit-aspect, when `aspect` is
    given) counts when it was asked in both orders; if asked more than once in one
    order the last row stands. Units asked in one order only are counted in
    `n_unpaired`. The first-position test uses every side verdict, paired or not.
    """
    if not 0.0 < alpha_level < 1.0:
        raise CurationInputError(f"alpha_level must lie in (0, 1), got {alpha_level}")
    unit = as_codes(unit, name="unit")
    first_a = np.asarray(shown_first_is_a)
    if first_a.dtype != bool:
        raise CurationInputError(f"shown_first_is_a must be boolean, got dtype {first_a.dtype}")
    verdict = _verdicts(verdict)
    aspect = np.zeros(unit.size, dtype=np.int64) if aspect is None else as_codes(aspect, name="aspect")
    n = _same_length(unit=unit, shown_first_is_a=first_a, verdict=verdict, aspect=aspect)
    n_aspects = int(aspect.max()) + 1 if n else 1

    key = unit * n_aspects + aspect
    # One verdict per (key, order): the presentation order plays the rater in last_per_unit_rater.
    keep, _ = last_per_unit_rater(key, first_a.astype(np.int64))
    kept_key, kept_first, kept_verdict = key[keep], first_a[keep], verdict[keep]
    order = np.lexsort((kept_first, kept_key))
    kept_key, kept_first, kept_verdict = kept_key[order], kept_first[order], kept_verdict[order]
    # Sorted by key then order (False before True): a swapped key is two adjacent rows.
    both = np.flatnonzero((kept_key[1:] == kept_key[:-1]) & (kept_first[1:] != kept_first[:-1]))
    same = kept_verdict[both] == kept_verdict[both + 1]
    swapped_aspect = kept_key[both] % n_aspects
    n_swapped_per_aspect = np.bincount(swapped_aspect, minlength=n_aspects)
    per_aspect = _share(np.bincount(swapped_aspect, weights=same, minlength=n_aspects), n_swapped_per_aspect)
    n_unpaired = int(np.unique(kept_key).size - both.size)

    sided = verdict != CHOICE_TIE
    picked_first = sided & ((verdict == CHOICE_A) == first_a)
    n_sided, n_first = int(sided.sum()), int(picked_first.sum())
    p_value = binomtest(n_first, n_sided, 0.5).pvalue if n_sided else float("nan")

    message = None
    if n == 0:
        message = "no judgments"
    elif both.size == 0:
        message = "no unit was asked in both orders; swap agreement is undefined"
    elif n_sided == 0:
        message = "every verdict is a tie; first-position share is undefined"
    return SwapAgreement(
        agreement=float(same.mean()) if both.size else float("nan"),
        n_swapped=int(both.size),
        n_unpaired=n_unpaired,
        per_aspect=per_aspect,
        n_swapped_per_aspect=n_swapped_per_aspect,
        first_share=n_first / n_sided if n_sided else float("nan"),
        n_sided=n_sided,
        p_value=float(p_value),
        flagged=bool(p_value < alpha_level),
        alpha_level=alpha_level,
        message=message,
    )


@dataclass(frozen=True)
class ScorePairAgreement:
    """A judge's pairwise verdicts against the order of its own scores for the two images.

    `agreement_sided` counts only rows where both the verdict and the score order name
    a side; `agreement_with_ties` counts every row with finite scores, a tie verdict
    agreeing only with equal scores. `score_order` is the per-row order the scores
    imply (CHOICE_A / CHOICE_B / CHOICE_TIE, -1 where a score is NaN).
    """

    agreement_sided: float
    n_sided: int
    agreement_with_ties: float
    n_rows: int
    dropped_nan: int
    score_order: np.ndarray
    message: str | None = None


def score_pair_agreement(*, verdict, score_a, score_b, tie_tolerance: float = 0.0) -> ScorePairAgreement:
    """Does each verdict follow the judge's own aspect scores for images a and b?

    Scores within `tie_tolerance` of each other count as equal (a tie). Rows with a
    NaN score are dropped and counted.
    """
    if not np.isfinite(tie_tolerance) or tie_tolerance < 0:
        raise CurationInputError(f"tie_tolerance must be a finite number >= 0, got {tie_tolerance}")
    verdict = _verdicts(verdict)
    score_a = np.asarray(score_a, dtype=np.float64)
    score_b = np.asarray(score_b, dtype=np.float64)
    _same_length(verdict=verdict, score_a=score_a, score_b=score_b)
    finite = np.isfinite(score_a) & np.isfinite(score_b)
    difference = score_a - score_b
    score_order = np.where(difference > tie_tolerance, CHOICE_A, CHOICE_B)
    score_order = np.where(np.abs(difference) <= tie_tolerance, CHOICE_TIE, score_order)
    score_order = np.where(finite, score_order, -1)

    agree = (score_order == verdict)[finite]
    sided = ((score_order != CHOICE_TIE) & (verdict != CHOICE_TIE))[finite]
    message = None
    if verdict.size == 0:
        message = "no judgments"
    elif not finite.any():
        message = "no row has two finite scores"
    elif not sided.any():
        message = "no row has a side in both the verdict and the scores; sided agreement is undefined"
    return ScorePairAgreement(
        agreement_sided=float(agree[sided].mean()) if sided.any() else float("nan"),
        n_sided=int(sided.sum()),
        agreement_with_ties=float(agree.mean()) if agree.size else float("nan"),
        n_rows=int(finite.sum()),
        dropped_nan=int(verdict.size - finite.sum()),
        score_order=score_order,
        message=message,
    )


# --- judges against each other ----------------------------------------------------


class StrengthFlag(IntEnum):
    """A pair's place in the preference-strength ranking."""

    CLEAR = 0
    AMBIGUOUS = 1
    LIKELY_WRONG = 2
    UNSCORED = 3


@dataclass(frozen=True)
class PreferenceStrength:
    """Per pair: mean and standard deviation (ddof=1) across judges of the oriented
    difference r(chosen) - r(rejected), the number of judges, the rank of the mean
    (0 = weakest; -1 unscored) and its `StrengthFlag`. `left_out` names the judges a caller
    kept out of the computation, each with why (`preference_strength` itself leaves none out)."""

    mean: np.ndarray
    std: np.ndarray
    n_judges: np.ndarray
    rank: np.ndarray
    flag: np.ndarray
    likely_wrong_pct: float
    ambiguous_pct: float
    dropped_rows: int
    messages: tuple[str, ...] = ()
    left_out: tuple[str, ...] = ()


def _check_percentiles(likely_wrong_pct: float, ambiguous_pct: float) -> None:
    for name, value in (("likely_wrong_pct", likely_wrong_pct), ("ambiguous_pct", ambiguous_pct)):
        if not (np.isfinite(value) and 0.0 <= value <= 100.0):
            raise CurationInputError(f"{name} must lie in [0, 100], got {value}")
    if likely_wrong_pct + ambiguous_pct > 100.0:
        raise CurationInputError(
            f"likely_wrong_pct + ambiguous_pct must be at most 100, got {likely_wrong_pct + ambiguous_pct}"
        )


def preference_strength(
    *,
    pair,
    judge,
    score_a=None,
    score_b=None,
    verdict=None,
    chosen=None,
    n_pairs: int | None = None,
    likely_wrong_pct: float = 20.0,
    ambiguous_pct: float = 20.0,
) -> PreferenceStrength:
    """Secrets-of-RLHF-II preference strength of every pair across judges.

    One row per (pair, judge). A row with two finite scores contributes the judge's
    z-normalised difference (z over all of that judge's finite scores, so the mean
    cancels and the difference is (score_a - score_b) / judge std); otherwise, if
    `verdict` is given, the signed margin +1 (a), -1 (b), 0 (tie). Margins and z
    differences share one axis by convention only; keep verdict-only judges few.
    `chosen[p]` (CHOICE_A / CHOICE_B; default a) is the labelled preference of pair p:
    differences are oriented as r(chosen) - r(rejected), so a low mean says the judges
    disagree with the label. A judge's repeated rows on a pair: the last stands.

    Pairs ranked by mean (ties broken by pair code, so the order is deterministic): the
    lowest floor(n * likely_wrong_pct / 100) are LIKELY_WRONG, the next ones up to
    floor(n * (likely_wrong_pct + ambiguous_pct) / 100) AMBIGUOUS.
    """
    _check_percentiles(likely_wrong_pct, ambiguous_pct)
    pair = as_codes(pair, name="pair")
    judge = as_codes(judge, name="judge")
    n_rows = _same_length(pair=pair, judge=judge)
    if score_a is None and score_b is None and verdict is None:
        raise CurationInputError("give score_a and score_b, or verdict, or both")
    if (score_a is None) != (score_b is None):
        raise CurationInputError("score_a and score_b go together")
    nan = np.full(n_rows, np.nan)
    score_a = nan if score_a is None else np.asarray(score_a, dtype=np.float64)
    score_b = nan if score_b is None else np.asarray(score_b, dtype=np.float64)
    verdict = None if verdict is None else _verdicts(verdict)
    _same_length(pair=pair, score_a=score_a, score_b=score_b, **({} if verdict is None else {"verdict": verdict}))
    n_pairs = int(n_pairs if n_pairs is not None else (pair.max() + 1 if n_rows else 0))
    if n_rows and pair.max() >= n_pairs:
        raise CurationInputError(f"pair holds code {int(pair.max())} but only {n_pairs} were declared")
    chosen = np.zeros(n_pairs, dtype=np.int64) if chosen is None else _verdicts(chosen, name="chosen")
    if chosen.size != n_pairs:
        raise CurationInputError("chosen needs one entry per pair")
    if np.any(chosen == CHOICE_TIE):
        raise CurationInputError("chosen must be 0 (a) or 1 (b): a tie-labelled pair has no preference to weigh")

    messages = []
    keep, duplicates = last_per_unit_rater(pair, judge)
    if duplicates:
        messages.append(f"{duplicates} repeated judge row(s) on a pair; the last stands")
    pair, judge, score_a, score_b = pair[keep], judge[keep], score_a[keep], score_b[keep]
    verdict = None if verdict is None else verdict[keep]

    n_judges_total = int(judge.max()) + 1 if judge.size else 0
    values = np.concatenate([score_a, score_b])
    owners = np.concatenate([judge, judge])
    finite = np.isfinite(values)
    count = np.bincount(owners[finite], minlength=n_judges_total)
    mean = _share(np.bincount(owners[finite], weights=values[finite], minlength=n_judges_total), count)
    deviation = values[finite] - mean[owners[finite]]
    spread = np.bincount(owners[finite], weights=deviation * deviation, minlength=n_judges_total)
    judge_std = np.sqrt(_share(spread, count - 1))
    scored_judges = count >= 2
    flat = scored_judges & ~(judge_std > 1e-12 * np.maximum(np.abs(mean), 1.0))
    if flat.any():
        messages.append(f"{int(flat.sum())} judge(s) gave one score throughout; their scores are not used")

    scored = np.isfinite(score_a) & np.isfinite(score_b)
    with np.errstate(divide="ignore", invalid="ignore"):
        difference = np.where(scored & ~flat[judge], (score_a - score_b) / judge_std[judge], np.nan)
    if verdict is not None:
        margin = np.select([verdict == CHOICE_A, verdict == CHOICE_B], [1.0, -1.0], 0.0)
        difference = np.where(np.isnan(difference), margin, difference)
    usable = np.isfinite(difference)
    dropped_rows = int(usable.size - usable.sum())
    if dropped_rows:
        messages.append(f"{dropped_rows} row(s) had neither usable scores nor a verdict and were dropped")
    pair, difference = pair[usable], difference[usable]
    difference = np.where(chosen[pair] == CHOICE_B, -difference, difference)

    n_judges = np.bincount(pair, minlength=n_pairs)
    pair_mean = _share(np.bincount(pair, weights=difference, minlength=n_pairs), n_judges)
    centred = difference - pair_mean[pair]
    pair_std = np.sqrt(_share(np.bincount(pair, weights=centred * centred, minlength=n_pairs), n_judges - 1))

    ranked = np.flatnonzero(n_judges > 0)
    ranked = ranked[np.lexsort((ranked, pair_mean[ranked]))]
    rank = np.full(n_pairs, -1, dtype=np.int64)
    rank[ranked] = np.arange(ranked.size)
    n_wrong = int(np.floor(ranked.size * likely_wrong_pct / 100.0 + 1e-9))
    n_flagged = int(np.floor(ranked.size * (likely_wrong_pct + ambiguous_pct) / 100.0 + 1e-9))
    flag = np.full(n_pairs, StrengthFlag.UNSCORED, dtype=np.int8)
    flag[ranked] = StrengthFlag.CLEAR
    flag[ranked[n_wrong:n_flagged]] = StrengthFlag.AMBIGUOUS
    flag[ranked[:n_wrong]] = StrengthFlag.LIKELY_WRONG
    if n_rows == 0:
        messages.append("no judgments")
    elif ranked.size < n_pairs:
        messages.append(f"{n_pairs - ranked.size} pair(s) have no usable judge row and are unscored")
    if ranked.size and n_judges[ranked].max() < 2:
        messages.append("every pair has a single judge; the standard deviation is undefined")
    return PreferenceStrength(
        mean=pair_mean,
        std=pair_std,
        n_judges=n_judges,
        rank=rank,
        flag=flag,
        likely_wrong_pct=likely_wrong_pct,
        ambiguous_pct=ambiguous_pct,
        dropped_rows=dropped_rows,
        messages=tuple(messages),
    )


@dataclass(frozen=True)
class Transitivity:
    """Per prompt: directed 3-cycles in the majority-preference graph, whether the graph
    has any directed cycle, and how many images it joins. `cycle_share` is the share of
    prompts with a cycle among those whose graph joins three or more images."""

    n_three_cycles: np.ndarray
    has_cycle: np.ndarray
    n_images_in_graph: np.ndarray
    cycle_share: float
    n_prompts_checked: int
    message: str | None = None


def _has_cycle(adjacency: np.ndarray) -> bool:
    """Kahn's algorithm on a small dense 0/1 matrix: a cycle remains when no source is left."""
    alive = np.ones(adjacency.shape[0], dtype=bool)
    while alive.any():
        in_degree = adjacency[np.ix_(alive, alive)].sum(axis=0)
        if not (in_degree == 0).any():
            return True
        alive[np.flatnonzero(alive)[in_degree == 0]] = False
    return False


def transitivity(*, image_a, image_b, verdict, prompt_of_image) -> Transitivity:
    """Cycles in each prompt's majority-preference graph.

    One row per comparison: its images and consensus verdict (-1 for undecided). For
    each image pair the net count of a-over-b verdicts decides an edge winner -> loser;
    ties, undecided verdicts and a net count of zero give no edge. Directed 3-cycles
    are trace(A^3) / 3 of the prompt's adjacency matrix A.
    """
    image_a = as_codes(image_a, name="image_a")
    image_b = as_codes(image_b, name="image_b")
    verdict = _verdicts(verdict, allow_undecided=True)
    prompt_of_image = as_codes(prompt_of_image, name="prompt_of_image")
    _same_length(image_a=image_a, image_b=image_b, verdict=verdict)
    n_images = prompt_of_image.size
    if image_a.size and max(image_a.max(), image_b.max()) >= n_images:
        raise CurationInputError("an image code has no entry in prompt_of_image")
    if np.any(prompt_of_image[image_a] != prompt_of_image[image_b]):
        raise CurationInputError("a comparison joins images of different prompts")
    if np.any(image_a == image_b):
        raise CurationInputError("a comparison compares an image with itself")

    n_prompts = int(prompt_of_image.max()) + 1 if n_images else 0
    sided = (verdict == CHOICE_A) | (verdict == CHOICE_B)
    winner = np.where(verdict == CHOICE_A, image_a, image_b)[sided]
    loser = np.where(verdict == CHOICE_A, image_b, image_a)[sided]
    low, high = np.minimum(winner, loser), np.maximum(winner, loser)
    net_codes, inverse = np.unique(low * n_images + high, return_inverse=True)
    net = np.bincount(inverse, weights=np.where(winner == low, 1.0, -1.0), minlength=net_codes.size)
    edge_low, edge_high = net_codes // max(n_images, 1), net_codes % max(n_images, 1)
    decided = net != 0
    source = np.where(net > 0, edge_low, edge_high)[decided]
    target = np.where(net > 0, edge_high, edge_low)[decided]

    n_three_cycles = np.zeros(n_prompts, dtype=np.int64)
    has_cycle = np.zeros(n_prompts, dtype=bool)
    in_graph = np.zeros(n_images, dtype=bool)
    in_graph[source] = in_graph[target] = True
    n_images_in_graph = np.bincount(prompt_of_image[in_graph], minlength=n_prompts)
    edge_prompt = prompt_of_image[source]
    by_prompt = np.argsort(edge_prompt, kind="stable")
    bounds = np.searchsorted(edge_prompt[by_prompt], np.arange(n_prompts + 1))
    for prompt in np.flatnonzero(n_images_in_graph >= 3):
        edges = by_prompt[bounds[prompt] : bounds[prompt + 1]]
        nodes, local = np.unique(np.concatenate([source[edges], target[edges]]), return_inverse=True)
        adjacency = np.zeros((nodes.size, nodes.size), dtype=np.int64)
        adjacency[local[: edges.size], local[edges.size :]] = 1
        n_three_cycles[prompt] = int(np.trace(adjacency @ adjacency @ adjacency)) // 3
        has_cycle[prompt] = n_three_cycles[prompt] > 0 or _has_cycle(adjacency)

    checked = n_images_in_graph >= 3
    message = None
    if image_a.size == 0:
        message = "no comparisons"
    elif not checked.any():
        message = "no prompt has a decided preference graph over three or more images"
    return Transitivity(
        n_three_cycles=n_three_cycles,
        has_cycle=has_cycle,
        n_images_in_graph=n_images_in_graph,
        cycle_share=float(has_cycle[checked].mean()) if checked.any() else float("nan"),
        n_prompts_checked=int(checked.sum()),
        message=message,
    )


# --- machines against humans ------------------------------------------------------


@dataclass(frozen=True)
class HumanMachineAgreement:
    """Per judge code: pairwise accuracy against the human a / b consensus with a Wilson
    interval, and PLCC / SRCC (with p-values) of its image scores against mean human
    scores. NaN where undefined; `messages` say why."""

    n_pairs: np.ndarray
    n_correct: np.ndarray
    n_machine_ties: np.ndarray
    accuracy: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n_images: np.ndarray
    plcc: np.ndarray
    plcc_p: np.ndarray
    srcc: np.ndarray
    srcc_p: np.ndarray
    confidence: float
    messages: tuple[str, ...] = ()


def human_machine_agreement(
    *,
    human_consensus=None,
    unit=None,
    verdict=None,
    judge=None,
    human_mean_score=None,
    score_image=None,
    score=None,
    score_judge=None,
    n_judges: int | None = None,
    confidence: float = 0.95,
) -> HumanMachineAgreement:
    """Each machine judge against the humans, on what both judged.

    Pairwise part: `human_consensus[u]` is the human verdict of unit u (-1 undecided);
    rows `unit`, `verdict`, `judge` are machine verdicts. Only units with a human a / b
    consensus count; a machine tie there counts as wrong (and in `n_machine_ties`). A
    judge's repeated verdicts on a unit: the last stands.

    Score part: `human_mean_score[i]` is image i's mean human score (NaN where none,
    e.g. a column of `AspectScores.mean_z`); rows `score_image`, `score`, `score_judge`
    are machine scores, averaged per (judge, image). PLCC and SRCC need three or more
    shared images; below that they are NaN with a message.
    """
    if not 0.0 < confidence < 1.0:
        raise CurationInputError(f"confidence must lie in (0, 1), got {confidence}")
    has_pairs = human_consensus is not None or unit is not None or verdict is not None
    has_scores = human_mean_score is not None or score_image is not None or score is not None
    if not (has_pairs or has_scores):
        raise CurationInputError("give the pairwise inputs, the score inputs, or both")
    if has_pairs and (human_consensus is None or unit is None or verdict is None):
        raise CurationInputError("the pairwise part needs human_consensus, unit and verdict")
    if has_scores and (human_mean_score is None or score_image is None or score is None):
        raise CurationInputError("the score part needs human_mean_score, score_image and score")

    if not has_pairs:
        judge = None
    if has_pairs:
        human_consensus = _verdicts(human_consensus, name="human_consensus", allow_undecided=True)
        unit = as_codes(unit, name="unit")
        verdict = _verdicts(verdict)
        judge = np.zeros(unit.size, dtype=np.int64) if judge is None else as_codes(judge, name="judge")
        _same_length(unit=unit, verdict=verdict, judge=judge)
        if unit.size and unit.max() >= human_consensus.size:
            raise CurationInputError("a machine verdict names a unit beyond human_consensus")
    if has_scores:
        human_mean_score = np.asarray(human_mean_score, dtype=np.float64)
        score_image = as_codes(score_image, name="score_image")
        score = np.asarray(score, dtype=np.float64)
        score_judge = (
            np.zeros(score_image.size, dtype=np.int64)
            if score_judge is None
            else as_codes(score_judge, name="score_judge")
        )
        _same_length(score_image=score_image, score=score, score_judge=score_judge)
        if score_image.size and score_image.max() >= human_mean_score.size:
            raise CurationInputError("a machine score names an image beyond human_mean_score")

    seen = max((int(a.max()) + 1 for a in (judge, score_judge) if a is not None and a.size), default=0)
    if n_judges is not None and n_judges < seen:
        raise CurationInputError(f"a judge code is {seen - 1} but only {n_judges} judges were declared")
    n_judges = int(n_judges if n_judges is not None else seen)
    messages: list[str] = []
    pairwise = _pairwise_accuracy(human_consensus, unit, verdict, judge, n_judges, confidence, messages)
    correlation = _score_correlation(human_mean_score, score_image, score, score_judge, n_judges, messages)
    return HumanMachineAgreement(
        **pairwise,
        **correlation,
        confidence=confidence,
        messages=tuple(messages) if n_judges else ("no machine judgments",),
    )


def _pairwise_accuracy(human_consensus, unit, verdict, judge, n_judges, confidence, messages) -> dict:
    """Per judge: accuracy against the human a / b consensus and its Wilson interval."""
    if unit is None:
        unit = verdict = judge = np.zeros(0, dtype=np.int64)
        human_consensus = np.zeros(0, dtype=np.int64)
    keep, _ = last_per_unit_rater(unit, judge)
    unit, verdict, judge = unit[keep], verdict[keep], judge[keep]
    human = human_consensus[unit]
    shared = (human == CHOICE_A) | (human == CHOICE_B)
    n_pairs = np.bincount(judge[shared], minlength=n_judges)
    n_correct = np.bincount(judge[shared & (verdict == human)], minlength=n_judges)
    low, high = proportion_confint(n_correct, np.maximum(n_pairs, 1), alpha=1 - confidence, method="wilson")
    if human_consensus.size:
        for j in np.flatnonzero(n_pairs == 0):
            messages.append(f"judge {j}: no unit has both a human a / b consensus and its verdict")
    return dict(
        n_pairs=n_pairs,
        n_correct=n_correct,
        n_machine_ties=np.bincount(judge[shared & (verdict == CHOICE_TIE)], minlength=n_judges),
        accuracy=_share(n_correct, n_pairs),
        ci_low=np.where(n_pairs > 0, low, np.nan),
        ci_high=np.where(n_pairs > 0, high, np.nan),
    )


def _score_correlation(human_mean_score, score_image, score, score_judge, n_judges, messages) -> dict:
    """Per judge: PLCC and SRCC of its mean score per image against the mean human score."""
    n_images = np.zeros(n_judges, dtype=np.int64)
    plcc, plcc_p, srcc, srcc_p = (np.full(n_judges, np.nan) for _ in range(4))
    if score is None:
        return dict(n_images=n_images, plcc=plcc, plcc_p=plcc_p, srcc=srcc, srcc_p=srcc_p)
    size = max(human_mean_score.size, 1)
    usable = np.isfinite(score)
    cells, inverse = np.unique(score_judge[usable] * size + score_image[usable], return_inverse=True)
    machine = np.bincount(inverse, weights=score[usable]) / np.bincount(inverse)
    cell_judge, cell_image = cells // size, cells % size
    shared = np.isfinite(human_mean_score[cell_image])
    for j in range(n_judges):
        rows = shared & (cell_judge == j)
        n_images[j] = int(rows.sum())
        if n_images[j] < 3:
            messages.append(f"judge {j}: {n_images[j]} shared image(s); PLCC and SRCC need at least 3")
            continue
        x, y = machine[rows], human_mean_score[cell_image[rows]]
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            messages.append(f"judge {j}: machine or human scores are constant; PLCC and SRCC are undefined")
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConstantInputWarning)
            plcc[j], plcc_p[j] = pearsonr(x, y)
            srcc[j], srcc_p[j] = spearmanr(x, y)
    return dict(n_images=n_images, plcc=plcc, plcc_p=plcc_p, srcc=srcc, srcc_p=srcc_p)
