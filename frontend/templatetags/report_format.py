"""Template filters that write report figures the way the report's own texts do."""
from django import template

from curation.report.numbers import p_value_text

register = template.Library()


@register.filter
def p_value(value) -> str:
    """A p-value as the report writes it everywhere: 'p = 0.034', 'p = 3.2e-05'."""
    return p_value_text(value)


@register.filter
def raters_kept(run) -> str:
    """'K of N': the raters a filter run kept (no rule left them out) of those it judged."""
    from curation.selectors import filter_run_raters_kept

    kept, total = filter_run_raters_kept(run=run)
    return f"{kept} of {total}"
