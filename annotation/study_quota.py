"""How much work a study participant (someone who came through a crowd-platform study link) may
still be given. Read by the lease and submit paths, which hold the participant's row lock while
they count, so that two tabs of one person cannot together go past the quota."""
from rest_framework.exceptions import PermissionDenied

from annotation.models import Assignment, Project, StudyParticipant, TaskType


def study_participant_for_work(*, project: Project, annotator, lock: bool = False) -> StudyParticipant | None:
    """The study participant record of `annotator` in `project`, with its link; None for anyone who
    did not come through a study link of it. With `lock`, the caller holds a transaction and gets
    the participant's row locked (their link is not locked)."""
    rows = StudyParticipant.objects.select_related("link").filter(user=annotator, link__project=project)
    if lock:
        rows = rows.select_for_update(of=("self",))
    return rows.order_by().first()


def study_units_given(*, participant: StudyParticipant) -> int:
    """The units the participant was given and has not lost: those they judged and those they hold
    now. A held unit counts whether or not it was answered: the workspace sends answers in the
    background, so a unit answered a moment ago is still held here until its answer arrives.
    Skipped units and expired leases do not count."""
    link = participant.link
    return Assignment.objects.filter(annotator_id=participant.user_id, project_id=link.project_id,
                                     task_type=link.task_type,
                                     status__in=[Assignment.Status.COMPLETED, Assignment.Status.ACTIVE]).count()


def study_units_judged(*, participant: StudyParticipant) -> int:
    """The units the participant judged (their answer stored, not undone)."""
    link = participant.link
    return Assignment.objects.filter(annotator_id=participant.user_id, project_id=link.project_id,
                                     task_type=link.task_type, status=Assignment.Status.COMPLETED).count()


def study_require_task_type(*, participant: StudyParticipant, task_type: str) -> None:
    """A participant works on their link's task type only (their quota is counted in it)."""
    if task_type != participant.link.task_type:
        raise PermissionDenied(f"Your study link is for {TaskType(participant.link.task_type).label.lower()} work "
                               f"only; {task_type!r} is not part of your study.")
