"""Which part of a project's instructions each task page shows.

A project has one instructions text (Markdown). A researcher may give a task type its own
section: a heading whose text is the task type's name ("Pairwise preference", "Personal
rating", or its key, "personal_rating"), at any level. Everything before the first such
heading is general.

- Pairwise, aspect-score and artifact-flag pages show the general part and their own section.
- The personal-rating page shows its own section only: personal ratings record taste, and the
  general part is written for judging quality ("prefer the image that follows the prompt"),
  which must not steer them (PAMELA).
"""
from markdown_it import MarkdownIt

from annotation.models import TaskType

_PARSER = MarkdownIt("commonmark")

# Shown above the project's own text on every page of that task type: what the task asks.
TASK_GUIDES = {
    TaskType.PAIRWISE: "Compare the two images of the same prompt and choose the better one, or Tie when "
                       "neither is better.",
    TaskType.ASPECT_SCORE: "Score the image on each aspect, from the lowest to the highest score, then submit. "
                           "A rationale is optional.",
    TaskType.PERSONAL_RATING: "Rate how much you personally like each image. There are no right or wrong "
                              "answers: your own taste is what is asked for, not how well the image follows "
                              "its prompt.",
    TaskType.ARTIFACT_FLAG: "Decide whether the image shows generation artifacts (distorted hands or faces, "
                            "garbled text, smears, duplicated parts). When it does, pick what is wrong.",
}

_SECTION_NAMES = {name.casefold(): task_type for task_type in TaskType
                  for name in (task_type.value, task_type.label, task_type.value.replace("_", " "))}


def _task_sections(text: str) -> tuple[str, dict[str, str]]:
    """`text` split into its general part and one part per task type that has a heading."""
    lines = text.splitlines(keepends=True)
    tokens = _PARSER.parse(text)
    starts = []  # (first line of the heading, task type)
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and token.map:
            task_type = _SECTION_NAMES.get(tokens[index + 1].content.strip().rstrip(":").casefold())
            if task_type:
                starts.append((token.map[0], token.map[1], task_type))
    if not starts:
        return text, {}
    general = "".join(lines[:starts[0][0]])
    sections: dict[str, str] = {}
    for (_, body_start, task_type), following in zip(starts, [*starts[1:], None]):
        body_end = following[0] if following else len(lines)
        sections[task_type] = sections.get(task_type, "") + "".join(lines[body_start:body_end])
    return general, sections


def instructions_for_task(*, text: str, task_type: str) -> str:
    """The Markdown of `text` (a project's instructions) that the `task_type` page shows."""
    general, sections = _task_sections(text or "")
    own = sections.get(task_type, "")
    if task_type == TaskType.PERSONAL_RATING:
        return own.strip()
    return "\n\n".join(part.strip() for part in (general, own) if part.strip())
