"""The filter run's report on machine judges of its aspect: per judge its swap agreement and
first-position bias, its self-consistency over k samples, how well its verdicts follow its own
scores, and its accuracy against the human consensus; across judges the preference strength of
every unit.

A judge asked k times per query (a job with samples = k) counts once everywhere but in its
self-consistency: each query stands as the majority of its samples (`LoadedPairwise.one_per_query`).

A judge the swap check flags (it picks the image shown first more often than chance allows, at
the run's `position_bias_p`) is left out of the preference strength, whatever the rules say of
people: the strength is a plain mean across judges, so one judge answering the order it was
shown moves every unit. Its row says so and why, as does the strength's `left_out`."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from curation.stats.judge_matrix import UNDECIDED, judge_unit_verdicts, verdict_agreement_matrix
from curation.stats.judgments import CHOICE_A, CHOICE_B
from curation.stats.judge_samples import self_consistency
from curation.loading import LoadedPairwise, comparison_images_load, pairwise_judgments_load
from curation.stats.human_machine import human_machine_agreement
from curation.stats.score_pairs import score_pair_agreement
from curation.stats.strength import PreferenceStrength, preference_strength
from curation.stats.swap import swap_agreement
from curation.report.numbers import number, p_number, p_value_text
from curation.report.pairwise import rater_names
from curation.report.scores import ScoreData


def machine_judges_report(*, project_id: int, rules, human: LoadedPairwise, consensus, scores: ScoreData):
    """Rows for the report's machine-judge table, the agreement matrix of the judges and the
    human consensus, and the preference strength (None without machine verdicts on units with a
    decided human consensus); ([], None, None) without machine verdicts."""
    samples = pairwise_judgments_load(project_id=project_id, aspect=rules.aspect, source="machine")
    if len(samples.judgments) == 0:
        return [], None, None
    queries = samples.query_codes()
    machine = samples.one_per_query()
    m = machine.judgments
    names = [name.removeprefix("machine:") for name in rater_names(machine.rater_ids)]
    human_unit = _human_units(human, machine)
    judge_verdict, human_verdict = _unit_verdicts(m, human_unit, consensus)
    matrix = _agreement_matrix(names, judge_verdict, human_verdict)
    agreement = None
    if (human_unit >= 0).any():
        judge, unit = np.nonzero(judge_verdict >= 0)
        agreement = human_machine_agreement(human_consensus=human_verdict, unit=unit,
                                            verdict=judge_verdict[judge, unit], judge=judge, n_judges=m.n_raters)
    score_a, score_b, score_aspect = _own_scores_of_sides(project_id, machine, scores, rules.aspect)
    rows = []
    left_out = np.zeros(m.n_raters, dtype=bool)
    for judge in range(m.n_raters):
        mine = m.rater == judge
        every_sample = samples.judgments.rater == judge
        swap = swap_agreement(unit=m.unit[mine], shown_first_is_a=m.left_is_a[mine], verdict=m.choice[mine],
                              alpha_level=rules.position_bias_p)
        consistency = self_consistency(query=queries[every_sample], verdict=samples.judgments.choice[every_sample])
        own = score_pair_agreement(verdict=m.choice[mine], score_a=score_a[mine], score_b=score_b[mine])
        row = {"judge": names[judge], "judgments": int(every_sample.sum()), "swap_agreement": number(swap.agreement),
               "swapped_units": swap.n_swapped, "first_share": number(swap.first_share),
               "p_value": p_number(swap.p_value), "position_biased": bool(swap.flagged),
               "self_consistency": number(consistency.agreement), "self_consistency_keys": consistency.n_keys,
               "samples_per_key": number(consistency.mean_samples),
               "self_consistency_message": consistency.message or "",
               "score_pair_agreement": number(own.agreement_sided), "score_pair_rows": own.n_sided,
               "score_aspect": score_aspect[judge]}
        left_out[judge] = swap.flagged
        row["strength_left_out"] = _left_out_reason(swap) if left_out[judge] else ""
        if agreement is not None:
            row.update(human_pairs=int(agreement.n_pairs[judge]), human_accuracy=number(agreement.accuracy[judge]),
                       human_accuracy_ci=[number(agreement.ci_low[judge]), number(agreement.ci_high[judge])])
        rows.append(row)
    strength = _strength(rules, human, consensus, m, human_unit, score_a, score_b, left_out)
    if strength is not None and left_out.any():
        strength = replace(strength, left_out=tuple(f"{names[judge]} left out: {rows[judge]['strength_left_out']}"
                                                    for judge in np.flatnonzero(left_out)))
    rows.sort(key=lambda row: row["judge"])  # the same order on every run, whatever the load order
    return rows, matrix, strength


def _left_out_reason(swap) -> str:
    """Why a judge the swap check flagged is not among the judges of the preference strength."""
    reason = (f"position bias: picked the image shown first {swap.first_share:.0%} of {swap.n_sided} times "
              f"({p_value_text(swap.p_value)})")
    if swap.n_swapped:
        reason += f"; its verdict survived swapping the sides on {swap.agreement:.0%} of {swap.n_swapped} pairs"
    return reason


def _unit_verdicts(m, human_unit, consensus) -> tuple[np.ndarray, np.ndarray]:
    """Per machine-judged unit, each judge's verdict (judges x units: the plurality of its verdicts in
    both orders, UNDECIDED for a split) and the human consensus where it is a or b (UNDECIDED for a
    tie or none).

    The matrix's human row and the judges' accuracy against humans both read these, so the two give a
    judge the same number. They once differed twice over: the accuracy took a judge's last verdict
    (whichever order was asked last) where the matrix took the plurality of both orders, and the
    matrix also counted the units humans called a tie. A judge whose two orders split on most units
    read 0.00 in the matrix and 0.25 in the table."""
    judge_verdict = judge_unit_verdicts(unit=m.unit, judge=m.rater, verdict=m.choice, n_units=m.n_units,
                                        n_judges=m.n_raters)
    human = np.where(human_unit >= 0, consensus.verdict[np.maximum(human_unit, 0)], UNDECIDED)
    human_verdict = np.full(m.n_units, UNDECIDED)
    human_verdict[m.unit] = np.where((human == CHOICE_A) | (human == CHOICE_B), human, UNDECIDED)
    return judge_verdict, human_verdict


def _agreement_matrix(names, judge_verdict, human_verdict) -> dict:
    """The human consensus and every judge against each other, on the machine-judged units; the
    judges in name order, as in the judges' table."""
    order = sorted(range(len(names)), key=lambda judge: names[judge])
    result = verdict_agreement_matrix(np.vstack([human_verdict, judge_verdict[order]]))
    return {"labels": ["human consensus", *(names[judge] for judge in order)],
            "agreement": [[number(v) for v in row] for row in result.agreement],
            "shared": result.shared.tolist(),
            "message": "" if result.shared[0, 0] else "no machine-judged unit has a human a / b consensus"}


def _human_units(human: LoadedPairwise, machine: LoadedPairwise) -> np.ndarray:
    """Per machine judgment, the human unit code of its comparison (-1 where no human judged it)."""
    if len(human.comparison_ids) == 0:
        return np.full(len(machine.judgments), -1)
    position = np.clip(np.searchsorted(human.comparison_ids, machine.comparison_ids), 0,
                       len(human.comparison_ids) - 1)
    found = human.comparison_ids[position] == machine.comparison_ids
    return np.where(found, position, -1)[machine.judgments.unit]


def _own_scores_of_sides(project_id, machine: LoadedPairwise, scores: ScoreData, aspect: str):
    """Per machine judgment, the judge's own score of image a and of image b (NaN where it did
    not score them), and per judge which scores were used: the run's aspect, or for "overall"
    without overall scores the mean of the judge's aspect scores of the image."""
    m = machine.judgments
    score_a, score_b = np.full(len(m), np.nan), np.full(len(m), np.nan)
    used = ["none"] * m.n_raters
    loaded = scores.machine
    if not len(loaded):
        return score_a, score_b, used
    images = comparison_images_load(project_id=project_id, comparison_ids=machine.comparison_ids)
    image_a, image_b = images.image_a[m.unit], images.image_b[m.unit]
    wanted = loaded.aspects.index(aspect) if aspect in loaded.aspects else -1
    for judge, judge_id in enumerate(machine.rater_ids):
        rows = loaded.rater_ids[loaded.rater] == judge_id
        if not rows.any():
            continue
        on_aspect = rows & (loaded.aspect == wanted)
        if on_aspect.any():
            rows, used[judge] = on_aspect, aspect
        elif aspect == "overall":
            used[judge] = "mean of aspects"
        else:
            continue
        image_ids, inverse = np.unique(loaded.image_ids[loaded.image[rows]], return_inverse=True)
        values = loaded.value[rows]
        finite = np.isfinite(values)
        counts = np.bincount(inverse[finite], minlength=image_ids.size)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.bincount(inverse[finite], values[finite], image_ids.size) / counts
        mine = m.rater == judge
        for ends, out in ((image_a, score_a), (image_b, score_b)):
            position = np.clip(np.searchsorted(image_ids, ends[mine]), 0, image_ids.size - 1)
            out[mine] = np.where(image_ids[position] == ends[mine], mean[position], np.nan)
    return score_a, score_b, used


def _strength(rules, human, consensus, m, human_unit, score_a, score_b, left_out) -> PreferenceStrength | None:
    """Secrets of RLHF II: across the judges not `left_out`, how strongly each unit's consensus
    side is preferred (a judge's own score difference where it scored both images, else its
    verdict as +-1). None without machine verdicts on a decided unit; every unit unscored when
    every judge with such verdicts is left out."""
    decided = np.isin(consensus.verdict, (0, 1))
    rows = (human_unit >= 0) & decided[np.maximum(human_unit, 0)]
    if not rows.any():
        return None
    rows &= ~left_out[m.rater]
    return preference_strength(pair=human_unit[rows], judge=m.rater[rows], verdict=m.choice[rows],
                               score_a=score_a[rows], score_b=score_b[rows],
                               chosen=np.where(decided, consensus.verdict, 0), n_pairs=human.judgments.n_units,
                               likely_wrong_pct=rules.likely_wrong_pct, ambiguous_pct=rules.ambiguous_pct)
