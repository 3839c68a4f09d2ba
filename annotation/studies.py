"""Every write to crowd-platform studies: study links (created and deactivated by a project's
researchers and admins), the participants who come through them, the end of a participant's work,
and rejecting a participant's work.

A participant is a pseudonymous annotator: an account with a generated username and no password,
signed in by the link itself. The platform's ids (participant, study, session) are kept on the
StudyParticipant row only; the quota is enforced where work is leased (`annotation.assignment`)
and stored (`annotation.judging`), counted by `annotation.study_quota`.

Reads (lists, finding a link by token, per-participant progress) are in `annotation.selectors`."""
import secrets

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation.models import Membership, Project, StudyLink, StudyParticipant, TaskType
from annotation.selectors import MANAGER_ROLES, project_require_writable, project_role
from annotation.services import membership_set, membership_suspend
from annotation.study_quota import study_participant_for_work, study_units_given, study_units_judged
from core.audit import audit_record
from core.models import AuditAction
from core.text import UNSTORABLE

STUDY_QUOTA_MAX = 10_000
PARTICIPANT_ID_MAX_CHARS = 128
COMPLETION_CODE_MAX_CHARS = 64
REJECTION_MARK = "study participant rejected"

# The query parameters each platform appends to the link: (participant id, study id, session id).
PLATFORM_PARAMETERS = {
    StudyLink.Platform.PROLIFIC: ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID"),
    StudyLink.Platform.GENERIC: ("participant_id", "study_id", "session_id"),
}


class StudyJoinRefused(ValidationError):
    """Opening a study link was refused. `reason`: "parameter" (a platform parameter is missing or
    unusable; `parameter` names it), "closed" (the link admits no one new) or "rejected" (the
    researcher rejected this participant's work)."""

    def __init__(self, reason: str, message: str, parameter: str = ""):
        super().__init__(message, code=reason)
        self.reason = reason
        self.parameter = parameter


def _require_manager(project: Project, actor, doing: str) -> None:
    if project_role(user=actor, project=project) not in MANAGER_ROLES:
        raise PermissionDenied(f"Only researchers and admins of project {project.slug!r} may {doing}.")


def _clean_completion(completion_code: str, completion_url: str) -> tuple[str, str]:
    code, url = (completion_code or "").strip(), (completion_url or "").strip()
    errors = {}
    if len(code) > COMPLETION_CODE_MAX_CHARS:
        errors["completion_code"] = f"at most {COMPLETION_CODE_MAX_CHARS} characters (got {len(code)})"
    elif UNSTORABLE.search(code) or any(c.isspace() for c in code):
        errors["completion_code"] = "letters, digits and punctuation only, without spaces"
    if url:
        try:
            URLValidator(schemes=["https", "http"])(url)
        except ValidationError:
            errors["completion_url"] = f"{url[:100]!r} is not an http(s) URL"
        if len(url) > 500:
            errors["completion_url"] = "at most 500 characters"
    if not code and not url and not errors:
        errors["completion_code"] = ("give a completion code, a completion URL or both: a participant needs one of "
                                     "them to show the platform they finished")
    if errors:
        raise ValidationError(errors)
    return code, url


@transaction.atomic
def study_link_create(*, project: Project, actor, task_type: str, quota: int,
                      platform: str = StudyLink.Platform.PROLIFIC, completion_code: str = "",
                      completion_url: str = "") -> StudyLink:
    """A new study link to `task_type` work in `project`, giving each participant up to `quota`
    units, then `completion_code` and/or `completion_url`. For the project's researchers and
    admins (PermissionDenied otherwise); an archived project takes none."""
    _require_manager(project, actor, "create study links")
    project_require_writable(project=project)
    if task_type not in TaskType.values or task_type not in project.task_types:
        raise ValidationError({"task_type": f"{task_type!r} is not switched on in project {project.slug!r} "
                                            f"(on: {', '.join(project.task_types)})"})
    if platform not in StudyLink.Platform.values:
        raise ValidationError({"platform": f"unknown platform {platform!r}; choose from "
                                           f"{', '.join(StudyLink.Platform.values)}"})
    if isinstance(quota, bool) or not isinstance(quota, int) or not 1 <= quota <= STUDY_QUOTA_MAX:
        raise ValidationError({"quota": f"must be a whole number of units from 1 to {STUDY_QUOTA_MAX}"})
    code, url = _clean_completion(completion_code, completion_url)
    link = StudyLink.objects.create(project=project, task_type=task_type, token=secrets.token_urlsafe(32),
                                    platform=platform, quota=quota, completion_code=code, completion_url=url,
                                    created_by=actor)
    audit_record(actor=actor, action=AuditAction.STUDY_LINK_CREATED, project=project, target=f"study link {link.pk}",
                 details={"task_type": task_type, "platform": platform, "quota": quota})
    return link


@transaction.atomic
def study_link_deactivate(*, link: StudyLink, actor) -> StudyLink:
    """Close `link` to new participants; those who started may still finish their quota."""
    _require_manager(link.project, actor, "deactivate study links")
    link = StudyLink.objects.select_for_update().select_related("project").get(pk=link.pk)
    if link.is_active:
        link.is_active, link.deactivated_at = False, timezone.now()
        link.save(update_fields=["is_active", "deactivated_at"])
        audit_record(actor=actor, action=AuditAction.STUDY_LINK_DEACTIVATED, project=link.project,
                     target=f"study link {link.pk}", details={"participants": link.participants.count()})
    return link


def _platform_value(params, name: str, *, required: bool) -> str:
    value = (params.get(name) or "").strip()
    if required and not value:
        raise StudyJoinRefused("parameter", f"The link was opened without its {name} parameter: open it from the "
                                            f"study page of your platform, which adds it.", parameter=name)
    if len(value) > PARTICIPANT_ID_MAX_CHARS:
        raise StudyJoinRefused("parameter", f"The {name} parameter is {len(value)} characters long; at most "
                                            f"{PARTICIPANT_ID_MAX_CHARS} are accepted.", parameter=name)
    if UNSTORABLE.search(value) or any(not c.isprintable() for c in value):
        raise StudyJoinRefused("parameter", f"The {name} parameter holds characters that are not printable.",
                               parameter=name)
    return value


def _new_participant_username() -> str:
    User = get_user_model()
    while True:
        username = f"participant-{secrets.token_hex(5)}"
        if not User.objects.filter(username=username).exists():
            return username


def study_participant_join(*, link: StudyLink, params) -> StudyParticipant:
    """The participant `params` (the link's query parameters) name: the same person again when their
    participant id came through this link before, else a new pseudonymous annotator (generated
    username, no password, annotator of the link's project). Raises StudyJoinRefused for a missing
    or unusable parameter, a deactivated link (for newcomers) or a rejected participant."""
    id_name, study_name, session_name = PLATFORM_PARAMETERS[link.platform]
    participant_id = _platform_value(params, id_name, required=True)
    study_id = _platform_value(params, study_name, required=False)
    session_id = _platform_value(params, session_name, required=False)
    participant = StudyParticipant.objects.select_related("user", "link__project").filter(
        link=link, participant_id=participant_id).first()
    if participant is None:
        if not link.is_active:
            raise StudyJoinRefused("closed", "This study is closed: it takes no new participants. Return to your "
                                             "platform's study page.")
        try:
            participant = _participant_create(link, participant_id, study_id, session_id)
        except IntegrityError:  # the same person opened the link twice at once: the first one stands
            participant = StudyParticipant.objects.select_related("user", "link__project").get(
                link=link, participant_id=participant_id)
    if participant.rejected_at is not None:
        raise StudyJoinRefused("rejected", "The researchers of this study ended your participation"
                               + (f": {participant.rejection_reason}" if participant.rejection_reason else "."))
    return participant


@transaction.atomic
def _participant_create(link, participant_id, study_id, session_id) -> StudyParticipant:
    user = get_user_model()(username=_new_participant_username())
    user.set_unusable_password()
    user.save()
    participant = StudyParticipant.objects.create(link=link, user=user, participant_id=participant_id,
                                                  study_id=study_id, session_id=session_id)
    # The platform adds them, as it does someone accepting an invitation.
    membership_set(project=link.project, user=user, role=Membership.Role.ANNOTATOR, actor=None)
    Membership.objects.filter(project=link.project, user=user).update(study_participant=True)
    return participant


def study_work_finished(*, project: Project, annotator, task_type: str) -> dict:
    """What a study participant who was leased nothing is told: {"state": "quota_done" or
    "no_work_left", "completion": {code, url, quota, judged}}, their completion stamped the first
    time; {} for anyone who is no study participant. Call it only when the lease brought no unit."""
    participant = study_participant_for_work(project=project, annotator=annotator)
    if participant is None or participant.link.task_type != task_type:
        return {}
    link = participant.link
    judged = study_units_judged(participant=participant)
    given = study_units_given(participant=participant)
    if participant.completed_at is None:
        (StudyParticipant.objects.filter(pk=participant.pk, completed_at__isnull=True)
         .update(completed_at=timezone.now()))
    return {"state": "quota_done" if given >= link.quota else "no_work_left",
            "completion": {"code": link.completion_code, "url": link.completion_url or None, "quota": link.quota,
                           "judged": judged}}


@transaction.atomic
def study_participant_reject(*, participant: StudyParticipant, actor, reason: str) -> StudyParticipant:
    """Reject a participant's work as `actor` (a researcher or admin of the project): their judgments
    are marked excluded and their leases returned, exactly as a suspension does (it is one), and
    they get no more work. Rejecting twice changes nothing."""
    link = participant.link
    _require_manager(link.project, actor, "reject study participants")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "give a reason: the participant sees it, and the audit log keeps it"})
    participant = StudyParticipant.objects.select_for_update().select_related("link__project", "user").get(
        pk=participant.pk)
    if participant.rejected_at is not None:
        return participant
    if not Membership.objects.filter(project=link.project, user=participant.user).exists():
        raise ValidationError({"participant": "this participant is no longer a member of the project; add them back "
                                              "to reject their work"})
    reason = reason[:400]
    participant.rejected_at, participant.rejected_by, participant.rejection_reason = timezone.now(), actor, reason
    participant.save(update_fields=["rejected_at", "rejected_by", "rejection_reason"])
    membership_suspend(project=link.project, user=participant.user, reason=f"{REJECTION_MARK}: {reason}", actor=actor)
    audit_record(actor=actor, action=AuditAction.PARTICIPANT_REJECTED, project=link.project,
                 target=f"study participant {participant.pk}",
                 details={"study_link": link.pk, "pseudonym": str(participant.user.annotator_profile.pseudonym),
                          "reason": reason})
    return participant
