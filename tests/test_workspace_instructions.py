"""Each task page shows the part of the project's instructions meant for it (frontend.instructions)."""
import pytest
from django.test import Client

from annotation.services import project_update
from frontend.instructions import TASK_GUIDES, instructions_for_task

SECTIONED = """Count the shapes first.

## Pairwise preference

Prefer the image that follows the prompt.

### Ties

Use Tie sparingly.

## Personal rating

Go with your gut.

# artifact_flag

Hands and text are the usual suspects.
"""


def test_a_task_page_shows_the_general_part_and_its_own_section():
    shown = instructions_for_task(text=SECTIONED, task_type="pairwise")

    assert shown.startswith("Count the shapes first.")
    assert "Prefer the image that follows the prompt." in shown and "Use Tie sparingly." in shown
    assert "gut" not in shown and "usual suspects" not in shown


def test_a_section_heading_may_name_the_task_by_its_key():
    shown = instructions_for_task(text=SECTIONED, task_type="artifact_flag")

    assert shown == "Count the shapes first.\n\nHands and text are the usual suspects."


def test_the_personal_rating_page_shows_only_its_own_section():
    assert instructions_for_task(text=SECTIONED, task_type="personal_rating") == "Go with your gut."
    assert instructions_for_task(text="Prefer the image that follows the prompt.", task_type="personal_rating") == ""


def test_instructions_without_sections_are_shown_on_every_judging_page():
    text = "# Rules\n\nBe fair."

    assert {instructions_for_task(text=text, task_type=t) for t in ("pairwise", "aspect_score", "artifact_flag")} == {
        "# Rules\n\nBe fair."}


def test_a_heading_inside_a_code_block_does_not_start_a_section():
    text = "Intro.\n\n```\n## Personal rating\n```\n\nMore."

    assert instructions_for_task(text=text, task_type="pairwise") == text.strip()
    assert instructions_for_task(text=text, task_type="personal_rating") == ""


@pytest.mark.django_db
def test_the_personal_rating_page_renders_its_guide_and_not_the_judging_rules(annotator, project):
    project_update(project=project, task_types=["pairwise", "personal_rating"],
                   instructions="Prefer the image that follows the prompt.\n\n"
                                "## Personal rating\n\n*Go with your gut.*")
    client = Client()
    client.force_login(annotator)

    rating_page = client.get(f"/work/{project.slug}/personal_rating/").content.decode()
    pairwise_page = client.get(f"/work/{project.slug}/pairwise/").content.decode()

    assert TASK_GUIDES["personal_rating"] in rating_page and "<em>Go with your gut.</em>" in rating_page
    assert "follows the prompt" not in rating_page
    assert "follows the prompt" in pairwise_page and "Go with your gut" not in pairwise_page
