"""Aggregation: a consensus label per pairwise unit, image strengths per prompt, and
per-image aspect scores.

Ties. A pairwise judgment is a, b or tie. Plain majority treats tie as a third answer.
The worker-weighted models of crowd-kit (Dawid-Skene, GLAD, MACE) aggregate
categorical labels and have no notion of a tie as "neither side", so ties are handled
outside them: a unit whose share of tie judgments exceeds `tie_threshold` is a tie;
otherwise the model aggregates the unit's a / b judgments (tie judgments are left out
of the model) and its posterior picks the side. crowd-kit's NoisyBT (`noisy_bt`) is a
pairwise model: it fits a strength per image with a skill and a left-side bias per rater,
from the sides as shown, so it needs each unit's images; ties are always decided by share. Bradley-Terry counts a tie as half a
win for each image (evalica's `tie_weight=0.5`), the usual arena convention, not the
Rao-Kupper or Davidson tie models.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal

import evalica
import numpy as np
import pandas as pd
from crowdkit.aggregation import GLAD, MACE, DawidSkene, NoisyBradleyTerry, OneCoinDawidSkene
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.special import expit, logit

from curation.stats.judgments import (
    CHOICE_A,
    CHOICE_B,
    CHOICE_NAMES,
    CHOICE_TIE,
    CurationInputError,
    PairwiseJudgments,
    as_codes,
)
from curation.stats.scores import rater_zscores

UNDECIDED = -1


class Reason(IntEnum):
    """Why a unit's consensus is what it is; `PairConsensus.reason_text` spells it out."""

    DECIDED = 0
    NO_JUDGMENTS = 1
    TOO_FEW = 2
    TIED_TOP = 3
    NARROW_MARGIN = 4
    TIE_SHARE = 5
    LOW_POSTERIOR = 6


@dataclass(frozen=True)
class PairConsensus:
    """One consensus per unit: `verdict` is CHOICE_A / CHOICE_B / CHOICE_TIE or UNDECIDED.

    `confidence` is the vote margin share (majority) or the model's posterior of the
    chosen side (weighted; the tie share for units called a tie). `counts` holds the
    unit's a / b / tie votes. `rater_agreement` (weighted only) is each rater's share
    of a / b judgments matching the verdict on units decided for a side.
    """

    verdict: np.ndarray
    reason: np.ndarray
    confidence: np.ndarray
    counts: np.ndarray
    method: str
    settings: dict = field(default_factory=dict)
    rater_agreement: np.ndarray | None = None
    message: str | None = None

    def reason_text(self, unit: int) -> str:
        """A sentence a researcher can read for why `unit` got its verdict."""
        a, b, tie = (int(x) for x in self.counts[unit])
        n = a + b + tie
        votes = f"{a} a / {b} b / {tie} tie"
        reason = Reason(int(self.reason[unit]))
        if reason is Reason.NO_JUDGMENTS:
            return "undecided: no judgments"
        if reason is Reason.TOO_FEW:
            return f"undecided: {n} judgment(s), at least {self.settings['min_judgments']} needed"
        if reason is Reason.TIED_TOP:
            return f"undecided: the top answers are tied ({votes})"
        if reason is Reason.NARROW_MARGIN:
            return f"undecided: margin {self.confidence[unit]:.2f} below {self.settings['min_margin']:.2f} ({votes})"
        if reason is Reason.TIE_SHARE:
            return f"tie: tie share {tie / n:.2f} above {self.settings['tie_threshold']:.2f} ({votes})"
        if reason is Reason.LOW_POSTERIOR:
            return (
                f"undecided: posterior {self.confidence[unit]:.2f} below {self.settings['min_posterior']:.2f} ({votes})"
            )
        return f"{CHOICE_NAMES[int(self.verdict[unit])]} ({votes}, confidence {self.confidence[unit]:.2f})"


def majority_consensus(
    judgments: PairwiseJudgments, *, min_judgments: int = 2, min_margin: float = 0.0
) -> PairConsensus:
    """Plurality vote over a / b / tie per unit.

    A unit is undecided when it has fewer than `min_judgments` judgments, when its top
    answers have equal votes, or when (top - runner-up) / judgments is below
    `min_margin` (a share in [0, 1]).
    """
    if min_judgments < 1:
        raise CurationInputError("min_judgments must be at least 1")
    if not 0.0 <= min_margin <= 1.0:
        raise CurationInputError(f"min_margin must lie in [0, 1], got {min_margin}")
    counts = judgments.counts()
    n = counts.sum(axis=1)
    ordered = np.sort(counts, axis=1)
    top, second = ordered[:, -1], ordered[:, -2]
    with np.errstate(divide="ignore", invalid="ignore"):
        margin = np.where(n > 0, (top - second) / n, 0.0)
    reason = np.full(n.size, Reason.DECIDED, dtype=np.int8)
    reason[margin < min_margin] = Reason.NARROW_MARGIN
    reason[top == second] = Reason.TIED_TOP
    reason[n < min_judgments] = Reason.TOO_FEW
    reason[n == 0] = Reason.NO_JUDGMENTS
    verdict = np.where(reason == Reason.DECIDED, counts.argmax(axis=1), UNDECIDED).astype(np.int8)
    return PairConsensus(
        verdict=verdict,
        reason=reason,
        confidence=margin,
        counts=counts,
        method="majority",
        settings={"min_judgments": min_judgments, "min_margin": min_margin},
        message="no judgments" if len(judgments) == 0 else None,
    )


WeightedMethod = Literal["dawid_skene", "one_coin_ds", "glad", "mace", "noisy_bt"]
WEIGHTED_METHODS = ("dawid_skene", "one_coin_ds", "glad", "mace", "noisy_bt")


def _side_posterior(judgments: PairwiseJudgments, sided: np.ndarray, method: WeightedMethod, n_iter: int, seed: int):
    """Posterior P(b) per unit from the chosen crowd-kit model over a / b judgments only."""
    frame = pd.DataFrame(
        {"task": judgments.unit[sided], "worker": judgments.rater[sided], "label": judgments.choice[sided]}
    )
    if method == "dawid_skene":
        model = DawidSkene(n_iter=n_iter)
    elif method == "one_coin_ds":
        model = OneCoinDawidSkene(n_iter=n_iter)
    elif method == "glad":
        model = GLAD(n_iter=n_iter)
    elif method == "mace":
        model = MACE(n_iter=n_iter, random_state=seed)
    else:
        raise CurationInputError(f"unknown method {method!r}; use one of {', '.join(WEIGHTED_METHODS)}")
    with warnings.catch_warnings():
        # crowd-kit 1.4 still uses pandas' inplace= and copy= keywords, deprecated in pandas 3.
        warnings.simplefilter("ignore", DeprecationWarning)
        probas = model.fit_predict_proba(frame)
    probas = probas.reindex(columns=[CHOICE_A, CHOICE_B], fill_value=0.0)
    posterior_b = np.full(judgments.n_units, np.nan)
    posterior_b[probas.index.to_numpy()] = probas[CHOICE_B].to_numpy()
    return posterior_b


def _noisy_bt_posterior(judgments: PairwiseJudgments, sided: np.ndarray, unit_images, n_iter: int, seed: int):
    """Posterior P(b) per unit from crowd-kit's NoisyBT over a / b judgments with the sides as shown:
    sigmoid of the strength difference of the unit's two images (NaN where neither was judged)."""
    if unit_images is None:
        raise CurationInputError("noisy_bt needs the images of each unit (unit_images)")
    image_a, image_b = (as_codes(images, name="unit_images") for images in unit_images)
    if image_a.size != judgments.n_units or image_b.size != judgments.n_units:
        raise CurationInputError(f"unit_images must hold {judgments.n_units} image codes per side")
    unit = judgments.unit[sided]
    left_is_a = np.ones(unit.size, dtype=bool) if judgments.left_is_a is None else judgments.left_is_a[sided]
    a, b = image_a[unit], image_b[unit]
    frame = pd.DataFrame({"worker": judgments.rater[sided], "left": np.where(left_is_a, a, b),
                          "right": np.where(left_is_a, b, a),
                          "label": np.where(judgments.choice[sided] == CHOICE_A, a, b)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # crowd-kit 1.4 on pandas 3
        scores = NoisyBradleyTerry(n_iter=n_iter, random_state=seed).fit_predict(frame)
    strength = np.full(int(max(image_a.max(initial=-1), image_b.max(initial=-1))) + 1, np.nan)
    strength[scores.index.to_numpy(dtype=np.int64)] = logit(np.clip(scores.to_numpy(), 1e-12, 1 - 1e-12))
    judged = np.bincount(unit, minlength=judgments.n_units) > 0
    return np.where(judged, expit(strength[image_b] - strength[image_a]), np.nan)


def _class_posteriors(judgments: PairwiseJudgments, method: WeightedMethod, n_iter: int, seed: int) -> np.ndarray:
    """Posterior of a, b and tie per unit (rows of NaN for units without judgments), from the
    crowd-kit model fitted on every judgment with tie as a third answer."""
    frame = pd.DataFrame({"task": judgments.unit, "worker": judgments.rater, "label": judgments.choice})
    model = {"dawid_skene": lambda: DawidSkene(n_iter=n_iter), "one_coin_ds": lambda: OneCoinDawidSkene(n_iter=n_iter),
             "glad": lambda: GLAD(n_iter=n_iter), "mace": lambda: MACE(n_iter=n_iter, random_state=seed)}.get(method)
    if model is None:
        raise CurationInputError(f"unknown method {method!r}; use one of {', '.join(WEIGHTED_METHODS)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # crowd-kit 1.4 on pandas 3
        probas = model().fit_predict_proba(frame)
    probas = probas.reindex(columns=[CHOICE_A, CHOICE_B, CHOICE_TIE], fill_value=0.0)
    posterior = np.full((judgments.n_units, 3), np.nan)
    posterior[probas.index.to_numpy()] = probas.to_numpy()
    return posterior


def weighted_consensus(
    judgments: PairwiseJudgments,
    *,
    method: WeightedMethod = "dawid_skene",
    ties: Literal["model", "share"] = "model",
    tie_threshold: float = 0.5,
    min_judgments: int = 1,
    min_posterior: float = 0.0,
    n_iter: int = 100,
    seed: int = 0,
    unit_images: tuple[np.ndarray, np.ndarray] | None = None,
) -> PairConsensus:
    """Worker-weighted consensus with crowd-kit.

    `method="noisy_bt"` needs `unit_images` (each unit's image a and image b codes) and always
    decides ties by share (`ties` is read as "share"); its fit is pure Python in crowd-kit 1.4,
    about a second per thousand judgments, so it suits small campaigns.

    `ties="model"` (the default, chosen on simulated crowds: docs/curation.md): the model is
    fitted on every judgment with tie as a third answer, and the answer with the largest
    posterior wins unless that posterior is below `min_posterior`; `tie_threshold` is unused.

    `ties="share"`: ties are handled outside the model. A unit whose tie share exceeds
    `tie_threshold` (or that has only tie judgments) is a tie. Otherwise the model,
    fitted on all a / b judgments of all units, gives the posterior of each side; the
    side with the larger posterior wins unless it is below `min_posterior` (or exactly
    0.5), which leaves the unit undecided. Dawid-Skene is the default and fast; GLAD
    and MACE cost seconds per ten thousand judgments.
    """
    if not 0.0 <= tie_threshold <= 1.0:
        raise CurationInputError(f"tie_threshold must lie in [0, 1], got {tie_threshold}")
    if not 0.0 <= min_posterior <= 1.0:
        raise CurationInputError(f"min_posterior must lie in [0, 1], got {min_posterior}")
    counts = judgments.counts()
    n = counts.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        tie_share = np.where(n > 0, counts[:, CHOICE_TIE] / n, 0.0)
    sided = judgments.choice != CHOICE_TIE
    settings = {
        "method": method,
        "tie_threshold": tie_threshold,
        "min_judgments": min_judgments,
        "min_posterior": min_posterior,
    }
    if method == "noisy_bt":
        ties = "share"  # NoisyBT has no tie answer
    settings["ties"] = ties
    message = None
    if ties == "model":
        return _modelled_ties_consensus(judgments, counts, n, method, settings, min_judgments, min_posterior,
                                        n_iter, seed)
    if sided.any() and method == "noisy_bt":
        posterior_b = _noisy_bt_posterior(judgments, sided, unit_images, n_iter, seed)
    elif sided.any():
        posterior_b = _side_posterior(judgments, sided, method, n_iter, seed)
    else:
        posterior_b = np.full(judgments.n_units, np.nan)
        message = "no judgments" if len(judgments) == 0 else "every judgment is a tie; no side to weigh"

    side = np.where(posterior_b > 0.5, CHOICE_B, CHOICE_A)
    side_posterior = np.where(side == CHOICE_B, posterior_b, 1.0 - posterior_b)
    reason = np.full(n.size, Reason.DECIDED, dtype=np.int8)
    reason[(side_posterior < min_posterior) | (posterior_b == 0.5)] = Reason.LOW_POSTERIOR
    no_sides = np.isnan(posterior_b)
    reason[no_sides] = Reason.TIE_SHARE  # only tie judgments on the unit
    reason[tie_share > tie_threshold] = Reason.TIE_SHARE
    reason[n < min_judgments] = Reason.TOO_FEW
    reason[n == 0] = Reason.NO_JUDGMENTS
    verdict = np.full(n.size, UNDECIDED, dtype=np.int8)
    decided = reason == Reason.DECIDED
    verdict[decided] = side[decided]
    verdict[reason == Reason.TIE_SHARE] = CHOICE_TIE
    confidence = np.where(reason == Reason.TIE_SHARE, tie_share, side_posterior)

    rater_agreement = _rater_agreement(judgments, verdict)
    return PairConsensus(
        verdict=verdict,
        reason=reason,
        confidence=confidence,
        counts=counts,
        method=method,
        settings=settings,
        rater_agreement=rater_agreement,
        message=message,
    )


def _modelled_ties_consensus(judgments, counts, n, method, settings, min_judgments, min_posterior, n_iter, seed):
    message = None
    if len(judgments):
        posterior = _class_posteriors(judgments, method, n_iter, seed)
    else:
        posterior = np.full((judgments.n_units, 3), np.nan)
        message = "no judgments"
    judged = ~np.isnan(posterior).any(axis=1)
    best = np.where(judged, np.nan_to_num(posterior, nan=-1.0).argmax(axis=1), UNDECIDED)
    confidence = np.where(judged, np.nan_to_num(posterior, nan=0.0).max(axis=1), np.nan)
    runner_up = np.sort(np.nan_to_num(posterior, nan=0.0), axis=1)[:, -2]
    reason = np.full(n.size, Reason.DECIDED, dtype=np.int8)
    reason[judged & ((confidence < min_posterior) | (confidence == runner_up))] = Reason.LOW_POSTERIOR
    reason[n < min_judgments] = Reason.TOO_FEW
    reason[n == 0] = Reason.NO_JUDGMENTS
    verdict = np.where(reason == Reason.DECIDED, best, UNDECIDED).astype(np.int8)
    return PairConsensus(verdict=verdict, reason=reason, confidence=confidence, counts=counts, method=method,
                         settings=settings, rater_agreement=_rater_agreement(judgments, verdict), message=message)


def _rater_agreement(judgments: PairwiseJudgments, verdict: np.ndarray) -> np.ndarray:
    """Each rater's share of a / b judgments matching the verdict on units decided for a side."""
    sided = judgments.choice != CHOICE_TIE
    judged_verdict = verdict[judgments.unit]
    compared = sided & ((judged_verdict == CHOICE_A) | (judged_verdict == CHOICE_B))
    matches = compared & (judgments.choice == judged_verdict)
    n_compared = np.bincount(judgments.rater, weights=compared, minlength=judgments.n_raters)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.bincount(judgments.rater, weights=matches, minlength=judgments.n_raters) / n_compared


@dataclass(frozen=True)
class ImageStrengths:
    """Bradley-Terry log-strength per image, centred to mean 0 within its prompt.

    NaN for images of prompts without judgments. `n_judgments` counts the judgments
    each image took part in.
    """

    strength: np.ndarray
    n_judgments: np.ndarray
    messages: tuple[str, ...] = ()


def bradley_terry_strengths(
    judgments: PairwiseJudgments,
    *,
    image_a,
    image_b,
    prompt_of_image,
    prior_ties: float = 0.5,
) -> ImageStrengths:
    """Fit Bradley-Terry with ties (evalica) separately for each prompt's images.

    `image_a[u]` / `image_b[u]` are the image codes of unit u; `prompt_of_image[i]`
    the prompt code of image i. Each prompt is fitted on its own (evalica builds dense
    item x item matrices, so one global fit over all images would not fit in memory,
    and strengths are only comparable within a prompt anyway). Every pair of images in
    a prompt gets a pseudo-tie of weight `prior_ties`: a weak prior that keeps
    strengths finite when an image wins every comparison and ties the images of a
    disconnected comparison graph to each other.
    """
    image_a = as_codes(image_a, name="image_a")
    image_b = as_codes(image_b, name="image_b")
    prompt_of_image = as_codes(prompt_of_image, name="prompt_of_image")
    if image_a.size != judgments.n_units or image_b.size != judgments.n_units:
        raise CurationInputError("image_a and image_b need one entry per unit")
    if prior_ties <= 0:
        raise CurationInputError("prior_ties must be positive")
    n_images = prompt_of_image.size
    xs, ys = image_a[judgments.unit], image_b[judgments.unit]
    if xs.size and (max(xs.max(), ys.max()) >= n_images):
        raise CurationInputError("an image code has no entry in prompt_of_image")
    prompt_of_judgment = prompt_of_image[xs]
    if np.any(prompt_of_judgment != prompt_of_image[ys]):
        raise CurationInputError("a unit compares images of different prompts")

    strength = np.full(n_images, np.nan)
    n_judgments = np.bincount(np.concatenate([xs, ys]), minlength=n_images)
    winners = np.array([evalica.Winner.X, evalica.Winner.Y, evalica.Winner.Draw], dtype=object)
    winner_of_judgment = winners[judgments.choice]

    images_by_prompt = np.argsort(prompt_of_image, kind="stable")
    image_bounds = np.searchsorted(prompt_of_image[images_by_prompt], np.arange(prompt_of_image.max() + 2))
    judgments_by_prompt = np.argsort(prompt_of_judgment, kind="stable")
    judgment_bounds = np.searchsorted(prompt_of_judgment[judgments_by_prompt], np.arange(prompt_of_image.max() + 2))
    for prompt in range(image_bounds.size - 1):
        images = images_by_prompt[image_bounds[prompt] : image_bounds[prompt + 1]]
        rows = judgments_by_prompt[judgment_bounds[prompt] : judgment_bounds[prompt + 1]]
        if rows.size == 0 or images.size < 2:
            continue
        pair_i, pair_j = np.triu_indices(images.size, k=1)
        result = evalica.bradley_terry(
            xs[rows].tolist() + images[pair_i].tolist(),
            ys[rows].tolist() + images[pair_j].tolist(),
            winner_of_judgment[rows].tolist() + [evalica.Winner.Draw] * pair_i.size,
            index=pd.Index(images),
            weights=[1.0] * rows.size + [prior_ties] * pair_i.size,
        )
        log_strength = np.log(result.scores.reindex(images).to_numpy())
        strength[images] = log_strength - log_strength.mean()

    messages = []
    judged_prompts = np.unique(prompt_of_judgment)
    unjudged = np.setdiff1d(np.unique(prompt_of_image), judged_prompts).size
    if unjudged:
        messages.append(f"{unjudged} prompt(s) have no judgments; their images have no strength")
    if xs.size:
        graph = coo_matrix((np.ones(xs.size), (xs, ys)), shape=(n_images, n_images))
        _, component = connected_components(graph, directed=False)
        judged = n_judgments > 0
        components_per_prompt = pd.Series(component[judged]).groupby(prompt_of_image[judged]).nunique()
        split = int((components_per_prompt > 1).sum())
        if split:
            messages.append(
                f"{split} prompt(s) have a disconnected comparison graph; strengths across its parts rest on the prior"
            )
    return ImageStrengths(strength=strength, n_judgments=n_judgments, messages=tuple(messages))


@dataclass(frozen=True)
class AspectScores:
    """Per image and aspect: mean of rater-z-normalised scores, and how many scores.

    `mean_z[i, k]` is NaN where image i has no usable score on aspect k.
    """

    mean_z: np.ndarray
    n_scores: np.ndarray
    dropped_nan: int
    dropped_constant_raters: int
    dropped_sparse_raters: int
    messages: tuple[str, ...] = ()


def zscore_aspect_scores(
    *,
    image,
    rater,
    score,
    aspect=None,
    n_images: int | None = None,
    n_aspects: int | None = None,
    min_scores_per_rater: int = 3,
) -> AspectScores:
    """Average per-image aspect scores after z-normalising each rater's scores per aspect.

    Raters use a scale differently (some never go below 3); z-normalising each
    (rater, aspect) removes their offset and spread before averaging. NaN scores are
    dropped and counted. A (rater, aspect) with fewer than `min_scores_per_rater`
    scores, or with zero spread (a straight-liner), has no z-scores and is dropped and
    counted, not guessed.
    """
    image = as_codes(image, name="image")
    rater = as_codes(rater, name="rater")
    score = np.asarray(score, dtype=np.float64)
    aspect = np.zeros(image.size, dtype=np.int64) if aspect is None else as_codes(aspect, name="aspect")
    if not (rater.size == score.size == aspect.size == image.size):
        raise CurationInputError("image, rater, score and aspect must have equal lengths")
    n_images = int(n_images if n_images is not None else (image.max() + 1 if image.size else 0))
    n_aspects = int(n_aspects if n_aspects is not None else (aspect.max() + 1 if aspect.size else 1))

    zscores = rater_zscores(rater=rater, score=score, aspect=aspect, min_scores_per_rater=min_scores_per_rater)
    usable = np.isfinite(zscores.z)
    cell = image[usable] * n_aspects + aspect[usable]
    n_scores = np.bincount(cell, minlength=n_images * n_aspects).reshape(n_images, n_aspects)
    total = np.bincount(cell, weights=zscores.z[usable], minlength=n_images * n_aspects).reshape(n_images, n_aspects)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_z = np.where(n_scores > 0, total / n_scores, np.nan)
    return AspectScores(
        mean_z=mean_z,
        n_scores=n_scores,
        dropped_nan=zscores.dropped_nan,
        dropped_constant_raters=zscores.dropped_constant_raters,
        dropped_sparse_raters=zscores.dropped_sparse_raters,
        messages=zscores.messages,
    )
