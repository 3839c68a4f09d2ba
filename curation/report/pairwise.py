"""Sections of a filter run's report: the rater table (with the Bradley-Terry left advantage),
agreement on every aspect, preference strength and transitivity. Each function turns the pure
computations' results into JSON-ready figures (None for undefined numbers, with a message);
the ones that need more data read it through `curation.loading`."""
from __future__ import annotations

import numpy as np
from django.contrib.auth import get_user_model
from statsmodels.stats.proportion import proportion_confint

from annotation.models import MachineAnnotator
from curation.loading import ImageGraph, LoadedPairwise, pairwise_aspects, pairwise_judgments_load
from curation.report.numbers import number, p_number
from curation.stats.agreement import fleiss_kappa, krippendorff_alpha_bootstrap
from curation.stats.judgments import Ratings
from curation.stats.strength import StrengthFlag
from curation.stats.transitivity import transitivity


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


def rater_names(rater_ids) -> list[str]:
    """Usernames for people (id > 0) and "machine:<name>" for machine annotators (id < 0)."""
    people = dict(get_user_model().objects.filter(id__in=[int(i) for i in rater_ids if i > 0])
                  .values_list("id", "username"))
    machines = dict(MachineAnnotator.objects.filter(id__in=[-int(i) for i in rater_ids if i < 0])
                    .values_list("id", "name"))
    return [people.get(int(i), str(int(i))) if i > 0 else f"machine:{machines.get(-int(i))}" for i in rater_ids]


def rater_table(rater_ids, j, bias, bias_fit, agreement, gold, excluded) -> list[dict]:
    """One row per rater: volume, left share with its 95% Wilson interval and binomial p, the
    Bradley-Terry left advantage with its standard error, agreement, gold accuracy, and why the
    run left the rater out ("" when it did not)."""
    counts = np.bincount(j.rater, minlength=j.n_raters)
    low, high = proportion_confint(bias.n_left, np.maximum(bias.n_sided, 1), alpha=0.05, method="wilson")
    rows = []
    for r, name in enumerate(rater_names(rater_ids)):
        sided = bias.n_sided[r] > 0
        rows.append({
            "rater": name, "judgments": int(counts[r]), "left_share": number(bias.left_share[r]),
            "left_share_ci": [number(low[r]) if sided else None, number(high[r]) if sided else None],
            "p_value": p_number(bias.p_value[r]), "left_advantage": number(bias_fit.left_advantage[r]),
            "left_advantage_se": number(bias_fit.std_error[r]),
            "agreement": number(agreement.agreement[r]), "gold_answers": int(gold.n_gold[r]),
            "gold_accuracy": number(gold.accuracy[r]), "excluded": excluded.get(r, ""),
        })
    return rows


def position_bias_fit_summary(fit) -> dict:
    """How the Bradley-Terry left-advantage fit went: its data, graph and convergence."""
    return {"l2": fit.l2, "ties": "left out", "judgments": int(fit.n_sided.sum()),
            "ties_left_out": fit.n_ties_left_out, "images": int(np.isfinite(fit.strength).sum()),
            "components": fit.n_components, "split_prompts": fit.n_split_prompts, "iterations": fit.n_iterations,
            "converged": fit.converged, "message": "; ".join(fit.messages)}


def strength_summary(strength) -> dict | None:
    """Counts of the preference-strength flags, a 20-bin histogram of the mean strength, and the
    judges left out of it, each with why."""
    if strength is None:
        return None
    scored = strength.flag != StrengthFlag.UNSCORED
    counts, edges = np.histogram(strength.mean[scored], bins=20) if scored.any() else (np.zeros(0), np.zeros(0))
    return {"scored": int(scored.sum()), "likely_wrong": int((strength.flag == StrengthFlag.LIKELY_WRONG).sum()),
            "ambiguous": int((strength.flag == StrengthFlag.AMBIGUOUS).sum()),
            "histogram": {"counts": counts.astype(int).tolist(), "edges": [round(float(e), 4) for e in edges]},
            "left_out": list(strength.left_out)}


def transitivity_summary(graph: ImageGraph, consensus) -> dict:
    """Cycles in each prompt's majority graph of the consensus verdicts."""
    result = transitivity(image_a=graph.image_a, image_b=graph.image_b, verdict=consensus.verdict,
                          prompt_of_image=graph.prompt_of_image)
    return {"prompts_checked": result.n_prompts_checked, "prompts_with_cycles": int(result.has_cycle.sum()),
            "cycle_share": number(result.cycle_share), "message": result.message or ""}


TRADEOFF_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def confidence_tradeoff(consensus) -> list[dict]:
    """What dropping low-confidence units would cost and buy: at each confidence threshold, the
    share of units kept and their estimated accuracy (the mean posterior of the kept verdicts;
    for majority, the mean vote margin, which is not a probability)."""
    confidence = np.nan_to_num(np.asarray(consensus.confidence, dtype=float), nan=0.0)
    decided = np.asarray(consensus.verdict) >= 0
    rows = []
    for threshold in TRADEOFF_THRESHOLDS:
        kept = decided & (confidence >= threshold)
        rows.append({"min_confidence": threshold, "kept": int(kept.sum()),
                     "kept_share": number(kept.mean()) if kept.size else None,
                     "estimated_accuracy": number(confidence[kept].mean()) if kept.any() else None})
    return rows
