"""Pages for crowd-platform studies: opening a study link (which signs the participant in), the
study links section of a project's members page, and a link's participants with their progress.

Access is decided by `annotation.selectors`; every change goes through `annotation.studies` with
the signed-in user as the actor, and a refusal is shown on the page, in the service's words.
"""
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from annotation import selectors, studies
from annotation.models import StudyLink, TaskType
from frontend.views_people import SIGN_IN_BACKEND, _refusal

REFUSAL_STATUS = {"parameter": 400, "closed": 410, "rejected": 403}


@require_GET
def study_join(request, token: str):
    """A study link opened from a crowd platform: signs in the participant its parameters name (a
    new pseudonymous annotator the first time) and opens their workspace."""
    link = selectors.study_link_by_token(token=token)
    try:
        participant = studies.study_participant_join(link=link, params=request.GET)
    except studies.StudyJoinRefused as exc:
        return render(request, "frontend/study_join_refused.html",
                      {"link": link, "reason": exc.reason, "parameter": exc.parameter, "message": exc.messages[0]},
                      status=REFUSAL_STATUS[exc.reason])
    if request.user != participant.user:
        login(request, participant.user, backend=SIGN_IN_BACKEND)
    return redirect("workspace", slug=link.project.slug, task_type=link.task_type)


def study_links_context(request, project) -> dict:
    """What the members page shows of the project's study links, and its form to make one."""
    links = [{"link": link, "url": selectors.study_link_url(request=request, link=link)}
             for link in selectors.study_link_list(project=project)[:100]]
    labels = dict(TaskType.choices)
    return {"study_links": links, "study_platforms": StudyLink.Platform.choices,
            "study_task_types": [(t, labels.get(t, t)) for t in project.task_types],
            "study_quota_max": studies.STUDY_QUOTA_MAX}


def _study_links_anchor(slug: str) -> str:
    return f"{reverse('members', kwargs={'slug': slug})}#study-links"


def _int_field(request, name: str) -> int:
    try:
        return int(request.POST.get(name, ""))
    except ValueError:
        raise ValidationError({name: "must be a whole number"}) from None


@login_required
@require_POST
def study_link_create(request, slug: str):
    project = selectors.project_get_for_user(user=request.user, slug=slug, manage=True)
    try:
        studies.study_link_create(
            project=project, actor=request.user, task_type=request.POST.get("task_type", ""),
            platform=request.POST.get("platform", StudyLink.Platform.PROLIFIC), quota=_int_field(request, "quota"),
            completion_code=request.POST.get("completion_code", ""),
            completion_url=request.POST.get("completion_url", ""))
    except (ValidationError, PermissionDenied) as exc:
        messages.error(request, f"No study link was created: {_refusal(exc)}")
    else:
        messages.success(request, "Study link created: paste it into your study on the platform.")
    return redirect(_study_links_anchor(project.slug))


@login_required
@require_POST
def study_link_deactivate(request, slug: str, link_id: int):
    link = selectors.study_link_get_for_user(user=request.user, slug=slug, link_id=link_id)
    studies.study_link_deactivate(link=link, actor=request.user)
    messages.success(request, "Study link deactivated: nobody new can join through it; those who started may finish.")
    return redirect(_study_links_anchor(slug))


@login_required
def study_participants(request, slug: str, link_id: int):
    """A study link's participants: units judged of the quota, time spent, status, and Reject."""
    link = selectors.study_link_get_for_user(user=request.user, slug=slug, link_id=link_id)
    return render(request, "frontend/study_participants.html", {
        "project": link.project, "link": link, "url": selectors.study_link_url(request=request, link=link),
        "rows": selectors.study_participant_rows(link=link),
        "task_label": TaskType(link.task_type).label,
    })


@login_required
@require_POST
def study_participant_reject(request, slug: str, link_id: int, participant_id: int):
    participant = selectors.study_participant_get_for_user(user=request.user, slug=slug, link_id=link_id,
                                                           participant_id=participant_id)
    try:
        studies.study_participant_reject(participant=participant, actor=request.user,
                                         reason=request.POST.get("reason", ""))
    except (ValidationError, PermissionDenied) as exc:
        messages.error(request, _refusal(exc))
    else:
        messages.success(request, f"Participant {participant.participant_id} is rejected; their judgments are set "
                                  f"aside.")
    return redirect("study-participants", slug=slug, link_id=link_id)
