"""Per-rater position bias from a noisy Bradley-Terry fit.

The left share (`reliability.position_bias`) asks "does this rater pick the left image
more than half the time?". It cannot tell a rater who favours the left side from one
who happened to see the better image on the left more often. The model here can: one
Bradley-Terry strength per image and one left advantage per rater, fitted together,

    P(rater r picks a over b) = sigmoid(s_a - s_b + d * g_r),  d = +1 if a was on the left, else -1

so `g_r` is the log-odds rater r adds to whichever image is on the left, with the
images' own merit taken out. Ties are left out: a tie names no side, and counting it
as half a win for each image would pull every rater's advantage towards zero in
proportion to how often they press tie.

A small L2 prior (`l2`, a Gaussian of variance 1 / l2 on every parameter) keeps the
strengths finite when an image wins everything and ties the parts of a disconnected
comparison graph together (strengths across parts then rest on the prior; a left
advantage does not, since it is learned within each comparison). Fitted by Newton's
method with a backtracking line search: the Hessian's image block is a weighted graph
Laplacian plus l2, sparse and block-diagonal by prompt, factorised once per step with
SuperLU; the few rater columns are eliminated through their Schur complement, whose
inverse at the optimum is the rater block of the posterior covariance (the standard
errors). About 1 s for 1,000,000 judgments over 100,000 comparisons on one core.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import splu

from curation.stats.judgments import CHOICE_A, CHOICE_TIE, CurationInputError, PairwiseJudgments, as_codes


@dataclass(frozen=True)
class LeftAdvantage:
    """Per rater code: the fitted left advantage (log-odds added to the left image), its
    approximate standard error and the a / b judgments it rests on (NaN for raters with
    none). Per image code: the Bradley-Terry log-strength (NaN for images in no a / b
    judgment). `n_components` counts the parts of the comparison graph the fit saw;
    `n_split_prompts` the prompts whose judged images fall into more than one part, which
    `graph_message` then describes (None when no prompt is split)."""

    left_advantage: np.ndarray
    std_error: np.ndarray
    n_sided: np.ndarray
    strength: np.ndarray
    n_components: int
    n_split_prompts: int
    n_ties_left_out: int
    n_iterations: int
    converged: bool
    l2: float
    graph_message: str | None = None
    messages: tuple[str, ...] = ()


def _log_posterior(margin, chose_a, strength, advantage, l2) -> float:
    log_likelihood = -np.logaddexp(0.0, np.where(chose_a, -margin, margin)).sum()
    return float(log_likelihood - 0.5 * l2 * (strength @ strength + advantage @ advantage))


def bradley_terry_left_advantage(
    judgments: PairwiseJudgments,
    *,
    image_a,
    image_b,
    prompt_of_image=None,
    l2: float = 0.1,
    max_iter: int = 30,
    tol: float = 1e-6,
) -> LeftAdvantage:
    """Fit image strengths and per-rater left advantages to the a / b judgments (ties left out).

    `image_a[u]` / `image_b[u]` are the image codes of unit u; `prompt_of_image[i]`,
    when given, lets the result count prompts whose comparison graph is disconnected.
    Needs `judgments.left_is_a`. Stops when no parameter moves by more than `tol`, or
    after `max_iter` Newton steps (`converged` says which). Degenerate data (no a / b
    judgment) returns NaN with a message.
    """
    if judgments.left_is_a is None:
        raise CurationInputError("bradley_terry_left_advantage needs left_is_a")
    if not (np.isfinite(l2) and l2 > 0):
        raise CurationInputError(f"l2 must be a positive number, got {l2}")
    image_a = as_codes(image_a, name="image_a")
    image_b = as_codes(image_b, name="image_b")
    if image_a.size != judgments.n_units or image_b.size != judgments.n_units:
        raise CurationInputError("image_a and image_b need one entry per unit")
    n_images_all = int(max(image_a.max(initial=-1), image_b.max(initial=-1))) + 1
    if prompt_of_image is not None:
        prompt_of_image = as_codes(prompt_of_image, name="prompt_of_image")
        n_images_all = max(n_images_all, prompt_of_image.size)
        if prompt_of_image.size < n_images_all:
            raise CurationInputError("an image code has no entry in prompt_of_image")
    n_raters = judgments.n_raters

    sided = judgments.choice != CHOICE_TIE
    n_ties = int((~sided).sum())
    unit, rater = judgments.unit[sided], judgments.rater[sided]
    chose_a = judgments.choice[sided] == CHOICE_A
    side = np.where(judgments.left_is_a[sided], 1.0, -1.0)
    n_sided = np.bincount(rater, minlength=n_raters)
    nan_raters = np.full(n_raters, np.nan)
    if unit.size == 0:
        message = "no judgments" if len(judgments) == 0 else "every judgment is a tie; no side to fit"
        return LeftAdvantage(left_advantage=nan_raters, std_error=nan_raters.copy(), n_sided=n_sided,
                             strength=np.full(n_images_all, np.nan), n_components=0, n_split_prompts=0,
                             n_ties_left_out=n_ties, n_iterations=0, converged=False, l2=l2, graph_message=None,
                             messages=(message,))

    # Dense codes for the units and images the a / b judgments touch.
    units, unit = np.unique(unit, return_inverse=True)
    images, ends = np.unique(np.concatenate([image_a[units], image_b[units]]), return_inverse=True)
    end_a, end_b = ends[: units.size], ends[units.size:]
    n_img = images.size
    judged_a, judged_b = end_a[unit], end_b[unit]

    strength = np.zeros(n_img)
    advantage = np.zeros(n_raters)
    margin = np.zeros(unit.size)
    objective = _log_posterior(margin, chose_a, strength, advantage, l2)
    converged, iterations, schur = False, 0, None
    eye = np.arange(n_img)
    for iterations in range(1, max_iter + 1):
        p_a = 0.5 * (1.0 + np.tanh(0.5 * margin))  # sigmoid, without overflow warnings
        residual = chose_a - p_a
        weight = p_a * (1.0 - p_a)
        grad_s = (np.bincount(judged_a, residual, n_img) - np.bincount(judged_b, residual, n_img) - l2 * strength)
        grad_g = np.bincount(rater, residual * side, n_raters) - l2 * advantage
        # Negative Hessian: image block A = weighted Laplacian + l2, rater columns B, rater diagonal C.
        edge = np.bincount(unit, weight, units.size)
        degree = np.bincount(end_a, edge, n_img) + np.bincount(end_b, edge, n_img) + l2
        a_block = coo_matrix((np.concatenate([degree, -edge, -edge]),
                              (np.concatenate([eye, end_a, end_b]), np.concatenate([eye, end_b, end_a]))),
                             shape=(n_img, n_img)).tocsc()
        signed = weight * side
        b_block = (np.bincount(judged_a * n_raters + rater, signed, n_img * n_raters)
                   - np.bincount(judged_b * n_raters + rater, signed, n_img * n_raters)
                   ).reshape(n_img, n_raters)
        c_diag = np.bincount(rater, weight, n_raters) + l2
        factor = splu(a_block)
        solved = factor.solve(np.column_stack([b_block, grad_s]))
        x_block, y_vec = solved[:, :n_raters], solved[:, n_raters]
        schur = np.diag(c_diag) - b_block.T @ x_block
        step_g = np.linalg.solve(schur, grad_g - b_block.T @ y_vec)
        step_s = y_vec - x_block @ step_g

        scale = 1.0
        while True:
            new_s, new_g = strength + scale * step_s, advantage + scale * step_g
            new_margin = new_s[judged_a] - new_s[judged_b] + new_g[rater] * side
            new_objective = _log_posterior(new_margin, chose_a, new_s, new_g, l2)
            if new_objective >= objective - 1e-12 * abs(objective) or scale < 1e-4:
                break
            scale *= 0.5
        moved = scale * max(np.abs(step_s).max(initial=0.0), np.abs(step_g).max(initial=0.0))
        strength, advantage, margin, objective = new_s, new_g, new_margin, new_objective
        if moved < tol:
            converged = True
            break

    covariance = np.linalg.inv(schur)
    has_sides = n_sided > 0
    full_strength = np.full(n_images_all, np.nan)
    full_strength[images] = strength
    graph = coo_matrix((np.ones(units.size), (end_a, end_b)), shape=(n_img, n_img))
    n_components, component = connected_components(graph, directed=False)
    n_split = 0
    if prompt_of_image is not None:
        prompt = prompt_of_image[images]
        parts = np.unique(prompt * n_components + component)
        n_split = int(np.count_nonzero(np.bincount(parts // n_components) > 1))
    graph_message = None
    if n_split:
        graph_message = (f"the comparison graph is disconnected: {n_components} components over "
                         f"{np.unique(prompt).size} prompt(s), {n_split} prompt(s) split into unconnected parts; "
                         "strengths across parts rest on the prior, left advantages are unaffected")
    messages = [graph_message] if graph_message else []
    if not converged:
        messages.append(f"the Bradley-Terry fit did not converge in {max_iter} steps")
    if n_ties:
        messages.append(f"{n_ties} tie judgment(s) left out of the Bradley-Terry fit")
    return LeftAdvantage(
        left_advantage=np.where(has_sides, advantage, np.nan),
        std_error=np.where(has_sides, np.sqrt(np.diag(covariance)), np.nan),
        n_sided=n_sided, strength=full_strength, n_components=int(n_components), n_split_prompts=n_split,
        n_ties_left_out=n_ties, n_iterations=iterations, converged=converged, l2=l2, graph_message=graph_message,
        messages=tuple(messages))
