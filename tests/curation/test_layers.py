"""Curation's layers, as the tree shows them: the statistics in curation/stats/ are numpy code that
never reaches the database or Django, and a live judgment is defined once."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
STATS = sorted((ROOT / "curation" / "stats").glob("*.py"))


def imported_modules(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", STATS, ids=[p.stem for p in STATS])
def test_a_statistics_module_imports_no_django_and_nothing_outside_curation_stats(path):
    ours = {name for name in imported_modules(path) if name.split(".")[0] in
            ("django", "rest_framework", "annotation", "core", "curation", "mlworkers", "frontend", "config")}
    assert all(name.startswith("curation.stats") for name in ours), ours


def test_the_condition_of_a_live_judgment_is_written_in_one_place():
    def spells_it(text: str) -> bool:  # in raw SQL, or as an ORM filter
        return "excluded_reason = ''" in text or ('excluded_reason=""' in text and "retracted_at__isnull" in text)

    spelled = [str(p.relative_to(ROOT)) for folder in ("annotation", "curation", "frontend", "mlworkers", "core")
               for p in (ROOT / folder).rglob("*.py") if "migrations" not in p.parts and spells_it(p.read_text())]
    assert spelled == ["curation/selectors.py"], spelled
