"""Geometry of the filter-run report's inline SVG plots, computed from the run's summary.

Each function takes a part of `FilterRun.summary` and returns plain dicts of coordinates
and hover labels that `frontend/filter_run.html` draws; no chart library, no JavaScript.
"""
from __future__ import annotations

from curation.report.numbers import p_value_text


def reliability_dots(raters: list[dict]) -> dict:
    """One dot per rater: judgments made (x, 40..460 for 0..the most) against agreement with the
    others' consensus (y, 220..20 for 0..1; a rater without a figure sits on 0)."""
    most = max([r["judgments"] for r in raters] or [1]) or 1
    dots = [{"x": 40 + 420 * r["judgments"] / most, "y": 220 - 200 * (r["agreement"] or 0),
             "excluded": bool(r["excluded"]),
             "label": f"{r['rater']}: {r['judgments']} judgments, agreement {r['agreement']}"} for r in raters]
    return {"dots": dots, "most": most}


def strength_bars(histogram: dict | None) -> list[dict]:
    """One bar per histogram bin, 20 px wide, up to 120 px tall, baseline at y = 140."""
    histogram = histogram or {"counts": [], "edges": []}
    tallest = max(histogram["counts"] or [1]) or 1
    return [{"x": 20 + 22 * i, "height": 120 * n / tallest, "y": 140 - 120 * n / tallest,
             "label": f"{n} units with mean strength {histogram['edges'][i]:+.2f} to {histogram['edges'][i + 1]:+.2f}"}
            for i, n in enumerate(histogram["counts"])]


AGREEMENT_LEFT, AGREEMENT_RIGHT, AGREEMENT_ROW = 150, 460, 28


def agreement_bars(rows: list[dict]) -> dict:
    """Horizontal bars of alpha per aspect with the bootstrap interval as a whisker.

    The axis runs from min(0, lowest value) to 1; an aspect without a defined alpha gets no
    bar, only its label and message. Returns the rows, the zero line's x and the height.
    """
    values = [v for r in rows for v in (r["alpha"], *r["alpha_ci"]) if v is not None]
    low = min([0.0, *values])

    def x(value: float) -> float:
        return AGREEMENT_LEFT + (AGREEMENT_RIGHT - AGREEMENT_LEFT) * (value - low) / (1.0 - low)

    zero = x(0.0)
    bars = []
    for i, row in enumerate(rows):
        y = 10 + AGREEMENT_ROW * i
        bar = {"aspect": row["aspect"], "y": y, "text_y": y + 14, "label": row["aspect"], "has_alpha": False,
               "has_ci": False}
        if row["alpha"] is not None:
            end = x(row["alpha"])
            bar.update(has_alpha=True, x=min(zero, end), width=max(abs(end - zero), 1.0),
                       label=f"{row['aspect']}: alpha {row['alpha']:.3f} on {row['judgments']} judgments")
            if None not in row["alpha_ci"]:
                bar.update(has_ci=True, ci_x1=x(row["alpha_ci"][0]), ci_x2=x(row["alpha_ci"][1]), ci_y=y + 10)
        bars.append(bar)
    return {"bars": bars, "zero": zero, "one": x(1.0), "height": 20 + AGREEMENT_ROW * max(len(rows), 1)}


SHARE_LEFT, SHARE_RIGHT, ADVANTAGE_LEFT, ADVANTAGE_RIGHT, BIAS_ROW = 120, 290, 320, 470, 22


def position_bias_rows(raters: list[dict]) -> dict:
    """Two panels, one row per rater: the left share with its 95% Wilson interval on 0..1, and
    the Bradley-Terry left advantage with +-1.96 standard errors on an axis symmetric about 0."""
    reach = max([0.5] + [abs(r["left_advantage"]) + 1.96 * (r["left_advantage_se"] or 0)
                         for r in raters if r.get("left_advantage") is not None])

    def share_x(value):
        return SHARE_LEFT + (SHARE_RIGHT - SHARE_LEFT) * value

    def advantage_x(value):
        return ADVANTAGE_LEFT + (ADVANTAGE_RIGHT - ADVANTAGE_LEFT) * (value + reach) / (2 * reach)

    rows = []
    for i, r in enumerate(raters):
        y = 30 + BIAS_ROW * i
        row = {"rater": r["rater"], "y": y, "text_y": y + 4, "excluded": bool(r["excluded"]),
               "has_share": r["left_share"] is not None, "has_advantage": r.get("left_advantage") is not None}
        if row["has_share"]:
            low, high = r.get("left_share_ci") or [r["left_share"], r["left_share"]]
            row.update(share=share_x(r["left_share"]), share_low=share_x(low), share_high=share_x(high),
                       share_label=f"{r['rater']}: left {r['left_share']:.2f} ({low:.2f} to {high:.2f}), "
                                   f"{p_value_text(r['p_value'])}")
        if row["has_advantage"]:
            advantage, error = r["left_advantage"], r["left_advantage_se"] or 0.0
            row.update(advantage=advantage_x(advantage), advantage_low=advantage_x(advantage - 1.96 * error),
                       advantage_high=advantage_x(advantage + 1.96 * error),
                       advantage_label=f"{r['rater']}: left advantage {advantage:+.2f} log-odds (se {error:.2f})")
        rows.append(row)
    return {"rows": rows, "height": 40 + BIAS_ROW * max(len(raters), 1), "half": share_x(0.5),
            "share_left": SHARE_LEFT, "share_right": SHARE_RIGHT, "zero": advantage_x(0.0),
            "advantage_left": ADVANTAGE_LEFT, "advantage_right": ADVANTAGE_RIGHT, "reach": round(reach, 2)}


MATRIX_LEFT, MATRIX_TOP, MATRIX_CELL_W, MATRIX_CELL_H = 130, 70, 64, 28


def _heat(value: float) -> str:
    """A fill from pale grey (0) to the report's blue (1)."""
    low, high = (246, 248, 250), (11, 92, 173)
    return "#" + "".join(f"{round(a + (b - a) * value):02x}" for a, b in zip(low, high))


def agreement_matrix(matrix: dict | None) -> dict | None:
    """A heat table: one cell per (row judge, column judge) with the agreement on the units both
    decided, coloured by it, labelled with the value and the shared count on hover."""
    if not matrix:
        return None
    labels = matrix["labels"]
    cells = []
    for i, row in enumerate(matrix["agreement"]):
        for j, value in enumerate(row):
            shared = matrix["shared"][i][j]
            x, y = MATRIX_LEFT + MATRIX_CELL_W * j, MATRIX_TOP + MATRIX_CELL_H * i
            cells.append({
                "x": x, "y": y, "text_x": x + MATRIX_CELL_W / 2, "text_y": y + 18, "row": labels[i],
                "column": labels[j], "fill": _heat(value) if value is not None else "#ffffff",
                "ink": "#ffffff" if value is not None and value > 0.6 else "#1f2328",
                "text": f"{value:.2f}" if value is not None else "–",
                "label": f"{labels[i]} vs {labels[j]}: " + (f"agree on {value:.0%} of {shared} units"
                                                            if value is not None else "no unit decided by both")})
    heads = [{"label": label, "x": MATRIX_LEFT + MATRIX_CELL_W * j + MATRIX_CELL_W / 2,
              "y": MATRIX_TOP - 8} for j, label in enumerate(labels)]
    rows = [{"label": label, "y": MATRIX_TOP + MATRIX_CELL_H * i + 18} for i, label in enumerate(labels)]
    return {"cells": cells, "heads": heads, "rows": rows, "width": MATRIX_LEFT + MATRIX_CELL_W * len(labels) + 10,
            "height": MATRIX_TOP + MATRIX_CELL_H * len(labels) + 10, "cell_w": MATRIX_CELL_W,
            "cell_h": MATRIX_CELL_H}
