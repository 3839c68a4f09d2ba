"""The shared API plumbing lives in core/, and access is decided once: selectors raise Django's
Http404 / PermissionDenied, which pages show as Django's 404 / 403 and the API answers in its one
error shape, with no translation in between."""
import ast
import pathlib

import pytest

from tests.conftest import client_for
from tests.factories import MembershipFactory, UserFactory

ROOT = pathlib.Path(__file__).resolve().parents[1]


def imports_of(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("app", ["curation", "mlworkers", "frontend", "config"])
def test_no_other_app_takes_api_plumbing_or_the_s3_client_from_annotation(app):
    borrowed = {name for path in (ROOT / app).rglob("*.py") if "migrations" not in path.parts
                for name in imports_of(path)
                if name in ("annotation.api.ListApi", "annotation.image_sources.s3_client")
                or name.startswith("annotation.api_support")}
    assert not borrowed, borrowed


def test_the_pages_do_not_translate_rest_framework_exceptions():
    assert not {name for name in imports_of(ROOT / "frontend" / "views.py") if name.startswith("rest_framework")}


@pytest.mark.django_db
def test_one_access_decision_gives_a_404_page_and_a_404_in_the_error_shape(project, outsider):
    page = client_for(None)
    page.force_login(outsider)

    assert page.get(f"/projects/{project.slug}/filter-runs/").status_code == 404
    answer = client_for(outsider).get(f"/api/v1/projects/{project.slug}/filter-runs/")
    assert answer.status_code == 404
    assert answer.json()["message"] == f"No project {project.slug!r} that you can see."


@pytest.mark.django_db
def test_one_access_decision_gives_a_403_page_and_a_403_in_the_error_shape(project):
    annotator = MembershipFactory(project=project, user=UserFactory(username="ann"), role="annotator").user
    page = client_for(None)
    page.force_login(annotator)

    assert page.get(f"/projects/{project.slug}/filter-runs/").status_code == 403
    answer = client_for(annotator).get(f"/api/v1/projects/{project.slug}/filter-runs/")
    assert answer.status_code == 403
    assert "needs the researcher or admin role" in answer.json()["message"]
