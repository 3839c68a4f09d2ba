"""Reading a filter-run report page's chart data (the `report-charts` json_script the page's
Vega-Lite charts draw) in tests."""
import json
import re


def charts_on_page(html: str) -> dict:
    """The rows each chart of the report page draws, by chart name."""
    found = re.search(r'<script id="report-charts" type="application/json">(.*?)</script>', html, re.S)
    assert found, "the page carries no chart data"
    return json.loads(found.group(1))
