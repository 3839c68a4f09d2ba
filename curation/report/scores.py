"""The filter run's report on per-image judgments: human aspect scores (z-normalised per rater,
their interval alpha per aspect), each person's own consistency (scores and personal ratings
against their own pairwise choices, personal ratings given twice to the same file), and machine
scores against mean human scores (PLCC / SRCC). Not unit verdicts: those are per comparison."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curation.stats.aggregation import zscore_aspect_scores
from curation.stats.agreement import krippendorff_alpha, krippendorff_alpha_bootstrap
from curation.stats.judgments import Ratings
from curation.loading import LoadedPairwise, LoadedScores, comparison_images_load, image_scores_load
from curation.stats.human_machine import human_machine_agreement
from curation.report.numbers import number, p_number
from curation.report.pairwise import rater_names
from curation.stats.scores import own_scores_vs_choices, rater_zscores, retest_consistency


@dataclass(frozen=True)
class ScoreData:
    human: LoadedScores
    machine: LoadedScores
    ratings: LoadedScores


def scores_load(*, project) -> ScoreData:
    """Live aspect scores (the project's aspects and "overall") from people and machines, and
    people's personal ratings."""
    aspects = list(dict.fromkeys([*project.aspect_keys, "overall"]))
    return ScoreData(
        human=image_scores_load(project_id=project.id, aspects=aspects, source="human"),
        machine=image_scores_load(project_id=project.id, aspects=aspects, source="machine"),
        ratings=image_scores_load(project_id=project.id, kind="personal_rating", source="human"))


def aspect_score_summary(scores: ScoreData, *, n_resamples: int, seed: int) -> dict:
    """Per aspect with human scores: counts, the interval alpha of the per-rater z-scores (with
    its unit bootstrap interval) and of the raw scores; NaN scores dropped with a count."""
    human = scores.human
    zscores = rater_zscores(rater=human.rater, score=human.value, aspect=human.aspect)
    rows = []
    for code, aspect in enumerate(human.aspects):
        mine = human.aspect == code
        if not mine.any():
            continue
        unit, rater = human.image[mine], human.rater[mine]
        alpha_z = krippendorff_alpha_bootstrap(Ratings.from_arrays(unit=unit, rater=rater, value=zscores.z[mine]),
                                               level="interval", n_resamples=max(1, n_resamples), seed=seed)
        alpha_raw = krippendorff_alpha(Ratings.from_arrays(unit=unit, rater=rater, value=human.value[mine]),
                                       level="interval")
        n_nan = int(np.isnan(human.value[mine]).sum())
        messages = [f"{n_nan} NaN score(s) dropped"] if n_nan else []
        if alpha_z.message:
            messages.append(alpha_z.message)
        rows.append({"aspect": aspect, "scores": int(mine.sum()), "images": int(np.unique(unit).size),
                     "raters": int(np.unique(rater).size), "alpha_z": number(alpha_z.alpha),
                     "alpha_z_ci": [number(alpha_z.ci_low), number(alpha_z.ci_high)],
                     "alpha_raw": number(alpha_raw.alpha), "message": "; ".join(messages)})
    machine_nan = int(np.isnan(scores.machine.value).sum())
    message = list(zscores.messages) if len(human) else ["no human aspect scores"]
    if machine_nan:
        message.append(f"{machine_nan} NaN machine score(s) dropped")
    return {"aspects": rows, "dropped_nan": zscores.dropped_nan, "machine_dropped_nan": machine_nan,
            "message": "; ".join(message)}


def rater_consistency_summary(*, project, scores: ScoreData, by_aspect: dict[str, LoadedPairwise]) -> dict:
    """Each person against themself: their aspect scores against their own pairwise choices on
    the same aspect, their personal ratings against their own "overall" choices, and personal
    ratings they gave twice to the same file (test-retest). The data model keeps one live
    score per person, image and aspect, so a retest needs the same file under two prompts;
    aspect scores are not retested, as an aspect such as prompt following depends on the prompt."""
    sources = [scores.human, scores.ratings]
    if not any(len(s) for s in sources):
        return {"raters": [], "retest_correlation": None, "message": "no human aspect scores or personal ratings"}
    rater_ids = np.unique(np.concatenate([s.rater_ids for s in sources]
                                         + [p.rater_ids for p in by_aspect.values()])).astype(np.int64)
    n_raters = rater_ids.size
    sided = {"scores": np.zeros(n_raters), "ratings": np.zeros(n_raters)}
    agree = {"scores": np.zeros(n_raters), "ratings": np.zeros(n_raters)}
    checks = [("scores", aspect, scores.human, code) for code, aspect in enumerate(scores.human.aspects)]
    checks.append(("ratings", "overall", scores.ratings, 0))
    for kind, aspect, loaded_scores, code in checks:
        pairwise = by_aspect.get(aspect)
        rows = loaded_scores.aspect == code
        if pairwise is None or not rows.any():
            continue
        images = comparison_images_load(project_id=project.id, comparison_ids=pairwise.comparison_ids)
        j = pairwise.judgments
        present = ~images.missing[j.unit]
        result = own_scores_vs_choices(
            pair_rater=np.searchsorted(rater_ids, pairwise.rater_ids[j.rater[present]]),
            image_a=images.image_a[j.unit[present]], image_b=images.image_b[j.unit[present]],
            choice=j.choice[present],
            score_rater=np.searchsorted(rater_ids, loaded_scores.rater_ids[loaded_scores.rater[rows]]),
            score_image=loaded_scores.image_ids[loaded_scores.image[rows]], score=loaded_scores.value[rows],
            n_raters=n_raters)
        sided[kind] += result.n_sided
        agree[kind] += np.nan_to_num(result.agreement) * result.n_sided
    ratings = scores.ratings
    retest = retest_consistency(rater=np.searchsorted(rater_ids, ratings.rater_ids[ratings.rater]),
                                item=ratings.content, value=ratings.value, n_raters=n_raters)
    rows = []
    for r, name in enumerate(rater_names(rater_ids)):
        if not (sided["scores"][r] or sided["ratings"][r] or retest.n_pairs[r]):
            continue
        rows.append({
            "rater": name,
            "scores_vs_choices": number(agree["scores"][r] / sided["scores"][r]) if sided["scores"][r] else None,
            "scores_vs_choices_n": int(sided["scores"][r]),
            "ratings_vs_choices": number(agree["ratings"][r] / sided["ratings"][r]) if sided["ratings"][r] else None,
            "ratings_vs_choices_n": int(sided["ratings"][r]),
            "retest_pairs": int(retest.n_pairs[r]), "retest_mean_abs_diff": number(retest.mean_abs_difference[r]),
            "retest_exact_share": number(retest.exact_share[r])})
    message = "" if rows else "no person both scored or rated images and judged pairs of them, or rated a file twice"
    return {"raters": rows, "retest_correlation": number(retest.correlation), "message": message}


def machine_score_summary(scores: ScoreData) -> dict:
    """Per machine judge and aspect it scored: PLCC and SRCC of its mean score per image against
    the mean human z-score of the image (images both scored)."""
    human, machine = scores.human, scores.machine
    if not len(machine):
        return {"judges": [], "message": ""}
    if not len(human):
        return {"judges": [], "message": "machine scores but no human aspect scores to compare them with"}
    mean_z = zscore_aspect_scores(image=human.image, rater=human.rater, score=human.value, aspect=human.aspect,
                                  n_images=human.image_ids.size, n_aspects=len(human.aspects)).mean_z
    machine_image_ids = machine.image_ids[machine.image]
    position = np.clip(np.searchsorted(human.image_ids, machine_image_ids), 0, human.image_ids.size - 1)
    shared = human.image_ids[position] == machine_image_ids
    names = rater_names(machine.rater_ids)
    rows = []
    for code, aspect in enumerate(machine.aspects):
        mine = shared & (machine.aspect == code)
        judged = np.unique(machine.rater[machine.aspect == code])
        if judged.size == 0:
            continue
        result = human_machine_agreement(human_mean_score=mean_z[:, code], score_image=position[mine],
                                         score=machine.value[mine], score_judge=machine.rater[mine],
                                         n_judges=machine.rater_ids.size)
        for judge in judged:
            n_images = int(result.n_images[judge])
            message = ""
            if n_images < 3:
                message = f"{n_images} image(s) scored by it and by people; PLCC and SRCC need at least 3"
            elif np.isnan(result.plcc[judge]):
                message = "its scores or the human scores are constant; PLCC and SRCC are undefined"
            rows.append({"judge": names[judge].removeprefix("machine:"), "aspect": aspect, "images": n_images,
                         "plcc": number(result.plcc[judge]), "plcc_p": p_number(result.plcc_p[judge]),
                         "srcc": number(result.srcc[judge]), "srcc_p": p_number(result.srcc_p[judge]),
                         "message": message})
    return {"judges": rows, "message": ""}
