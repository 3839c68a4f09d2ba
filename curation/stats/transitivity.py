"""Directed 3-cycles in each prompt's majority-preference graph."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curation.stats.judgments import (
    CHOICE_A,
    CHOICE_B,
    CurationInputError,
    as_codes,
    same_length,
    verdict_codes,
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
    verdict = verdict_codes(verdict, allow_undecided=True)
    prompt_of_image = as_codes(prompt_of_image, name="prompt_of_image")
    same_length(image_a=image_a, image_b=image_b, verdict=verdict)
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
