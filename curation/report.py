"""Sections of a filter run's report beyond the verdicts of its own aspect: agreement on every
aspect. Each function reads what it needs through `curation.loading`, calls the pure
computations and returns JSON-ready figures (None for undefined numbers, with a message)."""
from __future__ import annotations

import math

from curation.agreement import fleiss_kappa, krippendorff_alpha_bootstrap
from curation.judgments import Ratings
from curation.loading import LoadedPairwise, pairwise_aspects, pairwise_judgments_load


def number(value) -> float | None:
    """A float for JSON: rounded to 6 places, None for NaN."""
    value = float(value)
    return None if math.isnan(value) else round(value, 6)


def human_pairwise_by_aspect(*, project, run_aspect: str, run_loaded: LoadedPairwise) -> dict[str, LoadedPairwise]:
    """Live human pairwise judgments of every aspect that has some, the run's own already loaded;
    "overall" first, then the project's aspects in their order, then any other aspect found."""
    found = set(pairwise_aspects(project_id=project.id, source="human"))
    if len(run_loaded.judgments):
        found.add(run_aspect)
    order = ["overall", *project.aspect_keys, *sorted(found)]
    loaded = {}
    for aspect in order:
        if aspect in found and aspect not in loaded:
            loaded[aspect] = run_loaded if aspect == run_aspect else pairwise_judgments_load(
                project_id=project.id, aspect=aspect, source="human")
    return loaded


def agreement_by_aspect(*, by_aspect: dict[str, LoadedPairwise], n_resamples: int, seed: int) -> list[dict]:
    """Per aspect, over all live human judgments (no rater left out): Krippendorff's alpha
    (nominal over a / b / tie) with its unit-bootstrap interval, and Fleiss' kappa."""
    rows = []
    for aspect, loaded in by_aspect.items():
        j = loaded.judgments
        alpha = krippendorff_alpha_bootstrap(Ratings.from_pairwise(j), n_resamples=max(1, n_resamples), seed=seed)
        kappa = fleiss_kappa(j)
        messages = [m for m in (alpha.message, kappa.message) if m]
        rows.append({
            "aspect": aspect, "judgments": len(j), "units": j.n_units, "raters": j.n_raters,
            "alpha": number(alpha.alpha), "alpha_ci": [number(alpha.ci_low), number(alpha.ci_high)],
            "alpha_units": alpha.n_units, "fleiss_kappa": number(kappa.kappa), "fleiss_units": kappa.n_units,
            "message": "; ".join(dict.fromkeys(messages)),
        })
    return rows
