"""Every write to invitations and join codes: creating, revoking and accepting them, the account a
visitor makes while accepting one, and the e-mail that carries a link.

Reads (listing, finding one by token or code, whether one is still usable) are in
`annotation.selectors`."""
import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from annotation.models import Invitation, Membership, Project
from annotation.selectors import invitation_unusable_reason, project_role
from annotation.services import membership_set
from core.audit import audit_record
from core.models import AuditAction

logger = logging.getLogger(__name__)

ROLE_RANK = {Membership.Role.ANNOTATOR: 0, Membership.Role.RESEARCHER: 1, Membership.Role.ADMIN: 2}
INVITATION_MAX_DAYS = 90
INVITATION_MAX_USES = 10_000
# No 0/O, 1/I/L: a code is read aloud and typed.
JOIN_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
JOIN_CODE_LENGTH = 8


class InvitationUnusable(ValidationError):
    """The invitation cannot be accepted; `reason` is "expired", "revoked" or "used_up"."""

    def __init__(self, reason: str, message: str):
        super().__init__(message, code=reason)
        self.reason = reason


def _require_may_invite(project: Project, actor, role: str, doing: str) -> None:
    """Researchers invite annotators and researchers; only admins invite admins."""
    actor_role = project_role(user=actor, project=project)
    if actor_role not in (Membership.Role.RESEARCHER, Membership.Role.ADMIN):
        raise PermissionDenied(f"Only researchers and admins of project {project.slug!r} may {doing}.")
    if ROLE_RANK[role] > ROLE_RANK[actor_role]:
        raise PermissionDenied(f"You may not {doing} to a role higher than your own: as {actor_role} of "
                               f"project {project.slug!r} you cannot grant the {role} role.")


def _new_join_code() -> str:
    while True:
        code = "".join(secrets.choice(JOIN_CODE_ALPHABET) for _ in range(JOIN_CODE_LENGTH))
        if not Invitation.objects.filter(code=code).exists():
            return code


@transaction.atomic
def invitation_create(*, project: Project, actor, role: str = Membership.Role.ANNOTATOR, expires_in_days: int = 7,
                      max_uses: int = 1, join_code: bool = False) -> Invitation:
    """A new invitation to `project` with `role`, made by `actor`, usable `max_uses` times for
    `expires_in_days` days. An invitation to a role higher than the inviter's is refused
    (PermissionDenied). With `join_code`, it also gets a short code (annotators only)."""
    if role not in Membership.Role.values:
        raise ValidationError({"role": f"unknown role {role!r}; choose from {Membership.Role.values}"})
    _require_may_invite(project, actor, role, "invite people")
    if not 1 <= expires_in_days <= INVITATION_MAX_DAYS:
        raise ValidationError({"expires_in_days": f"must be from 1 to {INVITATION_MAX_DAYS} days"})
    if not 1 <= max_uses <= INVITATION_MAX_USES:
        raise ValidationError({"max_uses": f"must be from 1 to {INVITATION_MAX_USES}"})
    if join_code and role != Membership.Role.ANNOTATOR:
        raise ValidationError({"join_code": "a join code is short enough to guess, so it only grants the annotator "
                                            "role; send a link for other roles"})
    invitation = Invitation.objects.create(
        project=project, role=role, token=secrets.token_urlsafe(32), code=_new_join_code() if join_code else None,
        expires_at=timezone.now() + timedelta(days=expires_in_days), max_uses=max_uses, created_by=actor)
    audit_record(actor=actor, action=AuditAction.INVITATION_CREATED, project=project,
                 target=f"invitation {invitation.pk}",
                 details={"role": role, "max_uses": max_uses, "expires_at": invitation.expires_at.isoformat(),
                          "join_code": join_code})
    return invitation


@transaction.atomic
def invitation_revoke(*, invitation: Invitation, actor) -> Invitation:
    """Stop `invitation` from being accepted again (people who joined through it stay). Revoking
    an invitation to a role above the actor's is refused, as creating it would be."""
    _require_may_invite(invitation.project, actor, invitation.role, "revoke an invitation")
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.revoked_at is None:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
        audit_record(actor=actor, action=AuditAction.INVITATION_REVOKED, project=invitation.project,
                     target=f"invitation {invitation.pk}", details={"role": invitation.role, "uses": invitation.uses})
    return invitation


@transaction.atomic
def invitation_accept(*, invitation: Invitation, user) -> Membership:
    """Make `user` a member of the invitation's project with its role, counting one use under the
    invitation's row lock (two people taking the last use at once: one of them is refused).
    Raises InvitationUnusable when it has expired, was revoked or is used up. Someone already a
    member keeps their role and uses nothing."""
    invitation = Invitation.objects.select_for_update().select_related("project").get(pk=invitation.pk)
    existing = Membership.objects.filter(project=invitation.project, user=user).first()
    if existing is not None:
        return existing
    reason = invitation_unusable_reason(invitation=invitation)
    if reason:
        raise InvitationUnusable(reason, reason_message(reason))
    invitation.uses += 1
    invitation.save(update_fields=["uses"])
    # The role was checked against the inviter's when the invitation was made: the platform adds
    # the member (an admin invitation could not be accepted otherwise).
    membership = membership_set(project=invitation.project, user=user, role=invitation.role, actor=None)
    audit_record(actor=user, action=AuditAction.INVITATION_ACCEPTED, project=invitation.project,
                 target=f"invitation {invitation.pk}",
                 details={"role": invitation.role, "username": user.get_username(), "uses": invitation.uses,
                          "invited_by": invitation.created_by.get_username() if invitation.created_by else ""})
    return membership


def reason_message(reason: str) -> str:
    return {
        "expired": "This invitation has expired. Ask the researcher who sent it for a new one.",
        "revoked": "This invitation was revoked by the project's researchers. Ask them for a new one.",
        "used_up": "This invitation has been used as many times as it allows. Ask the researcher who sent it "
                   "for a new one.",
    }[reason]


@transaction.atomic
def account_create_and_accept(*, invitation: Invitation, username: str, password: str, email: str = ""):
    """A new account (`username`, `password` checked by AUTH_PASSWORD_VALIDATORS) that joins the
    invitation's project at once; nothing is created when the invitation cannot be accepted.
    Returns the user."""
    username = username.strip()
    User = get_user_model()
    errors = {}
    if not username:
        errors["username"] = ["Choose a username."]
    elif User.objects.filter(username__iexact=username).exists():
        errors["username"] = [f"The username {username!r} is taken; choose another, or sign in if it is yours."]
    else:
        try:
            User._meta.get_field("username").run_validators(username)
        except ValidationError as exc:
            errors["username"] = exc.messages
    candidate = User(username=username, email=email)
    try:
        validate_password(password, user=candidate)
    except ValidationError as exc:
        errors["password"] = exc.messages
    if errors:
        raise ValidationError(errors)
    user = User.objects.create_user(username=username, password=password, email=email)
    invitation_accept(invitation=invitation, user=user)
    return user


def invitation_email_configured() -> bool:
    """Invitations are e-mailed only where an SMTP server is configured (EMAIL_HOST)."""
    return bool(getattr(settings, "EMAIL_HOST", ""))


def invitation_email(*, invitation: Invitation, to: str, link: str) -> bool:
    """Send the invitation's `link` to `to`, where SMTP is configured; False where it is not, or
    where the mail server refused it or could not be reached (logged: the link still works).
    Call it outside any transaction: it talks to the mail server."""
    if not invitation_email_configured():
        return False
    try:
        _send_invitation(invitation, to, link)
    except OSError as exc:  # smtplib's errors included
        logger.warning("Invitation %s could not be e-mailed: %s", invitation.pk, exc)
        return False
    return True


def _send_invitation(invitation: Invitation, to: str, link: str) -> None:
    project = invitation.project
    inviter = invitation.created_by.get_username() if invitation.created_by else "A researcher"
    send_mail(
        subject=f"Invitation to {project.name} on PrefStudio",
        message=(f"{inviter} invites you to join the project {project.name!r} as "
                 f"{invitation.get_role_display().lower()}.\n\n"
                 f"Open this link to create an account or sign in and join:\n{link}\n\n"
                 f"The link works until {invitation.expires_at:%Y-%m-%d %H:%M} UTC."),
        from_email=None, recipient_list=[to], fail_silently=False)
