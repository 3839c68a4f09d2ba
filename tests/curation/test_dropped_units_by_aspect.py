"""A run's dropped units filtered by aspect, on the report page and through the API: a run decides the
units of its rules' aspect, another of the project's aspects has none, an unknown one is refused by name."""
import html as html_lib
import re

import pytest

from annotation.models import PreferenceJudgment, Source
from tests.conftest import client_for
from tests.curation.test_filter_runs import run_filter
from tests.factories import ComparisonFactory, MembershipFactory, PromptFactory, UserFactory

pytestmark = pytest.mark.django_db

DROP_TIES = {"consensus": "majority", "drop_ties": True}


def tied_units(project, *, units: int, aspect: str = "overall"):
    """`units` comparisons that two people both call a tie on `aspect`."""
    prompt = PromptFactory(project=project)
    comparisons = [ComparisonFactory(prompt=prompt) for _ in range(units)]
    people = [MembershipFactory(project=project, user=UserFactory(username=n)).user for n in ("ann", "bob")]
    PreferenceJudgment.objects.bulk_create([
        PreferenceJudgment(project=project, source=Source.HUMAN, annotator=person, comparison=comparison,
                           aspect=aspect, choice="tie", left_image=comparison.image_a)
        for comparison in comparisons for person in people])
    return comparisons


def page_links(html: str) -> dict[str, str]:
    """The dropped units' previous / next links, by rel."""
    return {rel: html_lib.unescape(href) for href, rel in re.findall(r'<a href="([^"]*)" rel="(prev|next)">', html)}


def test_the_page_filters_dropped_units_by_aspect_and_keeps_reason_and_aspect_across_pages(project, researcher):
    tied_units(project, units=55, aspect="aesthetic")
    run = run_filter(project, {**DROP_TIES, "aspect": "aesthetic"})
    client = client_for(researcher)
    client.force_login(researcher)

    first = client.get(f"/filter-runs/{run.pk}/?reason=tie&aspect=aesthetic").content.decode()
    second_url = page_links(first)["next"]
    second = client.get(f"/filter-runs/{run.pk}/{second_url.split('#')[0]}").content.decode()

    assert "page 1 of 2 (55 units)" in first and first.count('data-testid="dropped-') == 50
    assert second_url == "?reason=tie&aspect=aesthetic&page=2#dropped"
    assert "page 2 of 2 (55 units)" in second and second.count('data-testid="dropped-') == 5
    assert page_links(second)["prev"] == "?reason=tie&aspect=aesthetic&page=1#dropped"
    assert '<option value="aesthetic" selected>Aesthetic</option>' in second


def test_the_page_shows_no_dropped_unit_for_an_aspect_the_run_did_not_decide(project, researcher):
    tied_units(project, units=5)
    run = run_filter(project, DROP_TIES)  # decides overall
    client = client_for(researcher)
    client.force_login(researcher)

    other = client.get(f"/filter-runs/{run.pk}/?aspect=fidelity").content.decode()
    own = client.get(f"/filter-runs/{run.pk}/?aspect=overall").content.decode()

    assert other.count('data-testid="dropped-') == 0
    assert "No unit was dropped on this aspect (this run decides overall)." in other
    assert own.count('data-testid="dropped-') == 5


def test_the_api_filters_verdicts_by_aspect_with_and_without_a_reason(project, researcher):
    tied_units(project, units=6)
    run = run_filter(project, DROP_TIES)
    client = client_for(researcher)
    url = f"/api/v1/filter-runs/{run.pk}/verdicts/"

    assert client.get(f"{url}?aspect=overall&reason=tie").json()["count"] == 6
    assert client.get(f"{url}?aspect=overall").json()["count"] == 6
    assert client.get(f"{url}?aspect=aesthetic&reason=tie").json()["count"] == 0
    assert client.get(f"{url}?aspect=aesthetic&keep=false").json()["count"] == 0


@pytest.mark.parametrize("query", ["aspect=colour", "aspect=colour&reason=tie"])
def test_the_api_refuses_an_unknown_aspect_by_name(project, researcher, query):
    tied_units(project, units=2)
    run = run_filter(project, DROP_TIES)

    answer = client_for(researcher).get(f"/api/v1/filter-runs/{run.pk}/verdicts/?{query}")

    assert answer.status_code == 400
    assert "unknown aspect 'colour'" in answer.json()["message"] and "overall" in answer.json()["message"]
