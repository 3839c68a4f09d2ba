"""How the report writes numbers: JSON floats, and the one way a p-value is written everywhere
(reasons stored with verdicts, the run's page, its plots)."""
from __future__ import annotations

import math


def number(value) -> float | None:
    """A float for JSON: rounded to 6 places, None for NaN."""
    value = float(value)
    return None if math.isnan(value) else round(value, 6)


def p_number(value) -> float | None:
    """A p-value for JSON: 6 significant digits (rounding to places would write 1.7e-18 as 0), None for NaN."""
    value = float(value)
    return None if math.isnan(value) else float(f"{value:.6g}")


def p_value_text(p) -> str:
    """'p = 0.034' from 0.001 up, 'p = 3.2e-05' below it, 'p < 1e-300' where it underflowed;
    'p undefined' for None or NaN."""
    if p is None or math.isnan(float(p)):
        return "p undefined"
    p = float(p)
    if p == 0.0:
        return "p < 1e-300"
    return f"p = {p:.3f}" if p >= 0.001 else f"p = {p:.1e}"
