"""The data the filter-run report's charts draw, taken from `FilterRun.summary`: plain rows for
`json_script`, no markup and no geometry. The Vega-Lite specs that draw them are in
frontend/static/frontend/report_charts.js, one per key of `report_chart_data`.

A number a chart prints and a table beside it also prints (the judge matrix) is formatted here once,
so the two cannot round it differently.
"""
from __future__ import annotations

import json

from django.templatetags.static import static
from django.utils.safestring import mark_safe

from curation.report.numbers import p_value_text

USED, LEFT_OUT = "used by this run", "left out by this run"

# Past this many points the scatter's name labels would cover each other and the plot: the
# tooltips still name everyone at a point, and the table lists them all.
MOST_LABELLED_POINTS = 40


def report_chart_data(*, summary: dict, aspect_labels: dict[str, str]) -> dict:
    """Per chart of the report, its rows; a chart whose part of the summary is missing or empty
    gets an empty list (the page then leaves its container out)."""
    raters = summary.get("raters") or []
    scores = summary.get("aspect_scores") or {}
    return {
        "reliability": rater_points(raters),
        "bias": position_bias_rows(raters),
        "strength": strength_bins((summary.get("strength") or {}).get("histogram")),
        "agreement": aspect_alpha_rows(summary.get("agreement_by_aspect") or [], aspect_labels,
                                       alpha="alpha", interval="alpha_ci", count="judgments"),
        "matrix": judge_matrix_cells(summary.get("judge_matrix")),
        "aspect_scores": aspect_alpha_rows(scores.get("aspects") or [], aspect_labels,
                                           alpha="alpha_z", interval="alpha_z_ci", count="scores"),
        "machine_scores": machine_score_rows((summary.get("machine_scores") or {}).get("judges") or [],
                                             aspect_labels),
    }


def aspect_labels_of(project) -> dict[str, str]:
    """Aspect key -> the label people read ("prompt_following" -> "Prompt following"), overall included."""
    return {a["key"]: a.get("label") or a["key"] for a in [project.overall_aspect, *project.aspects]}


def _status(rater: dict) -> str:
    return LEFT_OUT if rater.get("excluded") else USED


def rater_points(raters: list[dict]) -> dict:
    """One point per place on the reliability scatter (judgments made, agreement with the others'
    consensus, used or left out), naming every rater who sits there: two raters with the same
    figures are one point labelled with both names, not one dot that hides the other."""
    places: dict[tuple, list[dict]] = {}
    for rater in raters:
        if rater.get("agreement") is None:
            continue  # no figure to place; the table says so
        places.setdefault((rater["judgments"], rater["agreement"], _status(rater)), []).append(rater)
    points = []
    for (judgments, agreement, status), here in places.items():
        names = [r["rater"] for r in here]
        label = ", ".join(names[:3]) + (f" +{len(names) - 3}" if len(names) > 3 else "")
        points.append({"raters": ", ".join(names), "label": label, "count": len(names), "judgments": judgments,
                       "agreement": agreement, "status": status,
                       "why": "; ".join(dict.fromkeys(r["excluded"] for r in here if r.get("excluded")))})
    return {"points": points, "labelled": len(points) <= MOST_LABELLED_POINTS}


def position_bias_rows(raters: list[dict]) -> list[dict]:
    """Per rater: the left share with its 95% Wilson interval and binomial p, and the Bradley-Terry
    left advantage with +-1.96 standard errors (None where a figure is undefined)."""
    rows = []
    for rater in raters:
        low, high = rater.get("left_share_ci") or [None, None]
        advantage, error = rater.get("left_advantage"), rater.get("left_advantage_se")
        spread = 1.96 * error if advantage is not None and error is not None else None
        rows.append({
            "rater": rater["rater"], "status": _status(rater), "left_share": rater.get("left_share"),
            "share_low": low, "share_high": high, "p": p_value_text(rater.get("p_value")),
            "advantage": advantage, "se": error,
            "advantage_low": advantage - spread if spread is not None else None,
            "advantage_high": advantage + spread if spread is not None else None,
        })
    return rows


def strength_bins(histogram: dict | None) -> list[dict]:
    """One row per histogram bin of the units' mean preference strength."""
    if not histogram:
        return []
    edges, counts = histogram.get("edges") or [], histogram.get("counts") or []
    return [{"low": edges[i], "high": edges[i + 1], "units": n} for i, n in enumerate(counts)]


def aspect_alpha_rows(rows: list[dict], aspect_labels: dict[str, str], *, alpha: str, interval: str,
                      count: str) -> list[dict]:
    """Per aspect, by its label: an alpha with its 95% interval, what it rests on, and the summary's
    note; an aspect without a defined alpha keeps its row (and says why) with alpha None."""
    result = []
    for row in rows:
        low, high = row.get(interval) or [None, None]
        result.append({"aspect": aspect_labels.get(row["aspect"], row["aspect"]), "key": row["aspect"],
                       "alpha": row.get(alpha), "low": low, "high": high, "count": row.get(count),
                       "note": row.get("message") or ("" if row.get(alpha) is not None else "alpha undefined")})
    return result


def judge_matrix_cells(matrix: dict | None) -> dict:
    """The agreement matrix as cells (row, column, agreement, shared units, and the text both the
    heat map and its table print), with the judges' order."""
    if not matrix:
        return {"labels": [], "cells": []}
    labels = matrix["labels"]
    cells = []
    for i, row in enumerate(matrix["agreement"]):
        for j, value in enumerate(row):
            cells.append({"row": labels[i], "column": labels[j], "agreement": value,
                          "shared": matrix["shared"][i][j], "text": f"{value:.2f}" if value is not None else "–"})
    return {"labels": labels, "cells": cells}


def judge_matrix_table(chart: dict) -> list[dict]:
    """The matrix's table: one row per judge with its cells in column order, from the chart's own cells."""
    width = len(chart["labels"])
    return [{"label": label, "cells": chart["cells"][i * width:(i + 1) * width]}
            for i, label in enumerate(chart["labels"])]


def machine_score_rows(judges: list[dict], aspect_labels: dict[str, str]) -> list[dict]:
    """Per (judge, aspect, measure): PLCC or SRCC of its scores against mean human scores."""
    rows = []
    for s in judges:
        for measure in ("plcc", "srcc"):
            if s.get(measure) is not None:
                rows.append({"judge": s["judge"], "aspect": aspect_labels.get(s["aspect"], s["aspect"]),
                             "pair": f"{s['judge']} · {aspect_labels.get(s['aspect'], s['aspect'])}",
                             "measure": measure.upper(), "value": s[measure], "images": s.get("images"),
                             "p": p_value_text(s.get(f"{measure}_p"))})
    return rows


def report_import_map() -> str:
    """The report page's import map: vega-interpreter is an ES module that imports "vega-util",
    which the vendored vega.min.js carries (report_vega_util.js hands it over)."""
    imports = {"vega-interpreter": static("frontend/vendor/vega-interpreter.js"),
               "vega-util": static("frontend/report_vega_util.js")}
    text = json.dumps({"imports": imports})
    # Same escaping as json_script: the map sits inside a <script> element.
    return mark_safe(text.replace("<", "\\u003C").replace(">", "\\u003E").replace("&", "\\u0026"))
