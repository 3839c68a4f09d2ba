"""Pages for people: a project's members and invitations, opening an invitation link, and joining
a project by its code.

Access is decided by `annotation.selectors`; every change goes through the annotation services
with the signed-in user as the actor, and a refusal is shown on the page, in the service's words.
"""
from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.core.validators import validate_email
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from annotation import invitations, selectors, services
from annotation.models import Membership
from curation.selectors import filter_run_latest_raters

SIGN_IN_BACKEND = "django.contrib.auth.backends.ModelBackend"


def _refusal(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    return str(exc) or "That is not allowed."


def _invitation_link(request, invitation) -> str:
    return request.build_absolute_uri(reverse("invitation", kwargs={"token": invitation.token}))


@login_required
def members(request, slug: str):
    """Members with their standing and numbers, the forms that change them, invitations and study links."""
    from frontend.views_studies import study_links_context

    project = selectors.project_get_for_user(user=request.user, slug=slug, manage=True)
    services.member_profiles_ensure(project=project)
    counts = selectors.member_judgment_counts(project=project)
    run, raters = filter_run_latest_raters(project=project)
    rows = []
    for membership in selectors.membership_list(project=project):
        name = membership.user.get_username()
        rows.append({"membership": membership, "username": name,
                     "pseudonym": membership.user.annotator_profile.pseudonym,
                     "judgments": counts.get(membership.user_id, 0), "rater": raters.get(name)})
    invitation_rows = [{"invitation": i, "link": _invitation_link(request, i),
                        "state": selectors.invitation_unusable_reason(invitation=i) or "usable"}
                       for i in selectors.invitation_list(project=project)[:100]]
    return render(request, "frontend/members.html", {
        "project": project, "rows": rows, "run": run, "invitations": invitation_rows,
        "roles": Membership.Role.choices, "my_role": selectors.project_role(user=request.user, project=project),
        "email_configured": invitations.invitation_email_configured(),
        "max_days": invitations.INVITATION_MAX_DAYS,
        **study_links_context(request, project),
    })


def _member_user(project, username: str):
    user = get_user_model().objects.filter(username=username).first()
    if user is None or not Membership.objects.filter(project=project, user=user).exists():
        raise Http404(f"{username!r} is not a member of {project.slug!r}.")
    return user


@login_required
@require_POST
def member_action(request, slug: str, username: str, action: str):
    """Change a member's role, suspend, reinstate or remove them, as the signed-in user."""
    project = selectors.project_get_for_user(user=request.user, slug=slug, manage=True)
    user = _member_user(project, username)
    try:
        if action == "role":
            services.membership_set(project=project, user=user, role=request.POST.get("role", ""), actor=request.user)
            done = f"{username} is now {request.POST['role']}."
        elif action == "suspend":
            reason = request.POST.get("reason", "").strip()
            if not reason:
                raise ValidationError("Give a reason for the suspension: the member and the audit log see it.")
            services.membership_suspend(project=project, user=user, reason=reason[:500], actor=request.user)
            done = f"{username} is suspended; their judgments are set aside."
        elif action == "reinstate":
            services.membership_reinstate(project=project, user=user, actor=request.user)
            done = f"{username} is reinstated."
        elif action == "remove":
            services.membership_remove(project=project, user=user, actor=request.user)
            done = f"{username} is no longer a member."
        else:
            raise Http404(f"No member action {action!r}.")
    except (ValidationError, PermissionDenied) as exc:
        messages.error(request, _refusal(exc))
    else:
        messages.success(request, done)
    return redirect("members", slug=project.slug)


def _int_field(request, name: str, default: int) -> int:
    try:
        return int(request.POST.get(name, default))
    except (TypeError, ValueError):
        raise ValidationError({name: "must be a whole number"})


@login_required
@require_POST
def invitation_create(request, slug: str):
    project = selectors.project_get_for_user(user=request.user, slug=slug, manage=True)
    email = request.POST.get("email", "").strip()
    try:
        if email:
            validate_email(email)
        invitation = invitations.invitation_create(
            project=project, actor=request.user, role=request.POST.get("role", Membership.Role.ANNOTATOR),
            expires_in_days=_int_field(request, "expires_in_days", 7), max_uses=_int_field(request, "max_uses", 1),
            join_code=request.POST.get("join_code") == "on")
    except (ValidationError, PermissionDenied) as exc:
        messages.error(request, _refusal(exc))
        return redirect("members", slug=project.slug)
    note = ""
    if email:
        if not invitations.invitation_email_configured():
            note = " E-mail is not configured here: copy the link."
        elif invitations.invitation_email(invitation=invitation, to=email, link=_invitation_link(request, invitation)):
            note = f" It was e-mailed to {email}."
        else:
            note = f" Sending it to {email} failed: copy the link."
    messages.success(request, f"Invitation created as {invitation.get_role_display().lower()}.{note}")
    return redirect(f"{reverse('members', kwargs={'slug': project.slug})}#invitation-{invitation.pk}")


@login_required
@require_POST
def invitation_revoke(request, slug: str, invitation_id: int):
    invitation = selectors.invitation_get_for_user(user=request.user, slug=slug, invitation_id=invitation_id)
    try:
        invitations.invitation_revoke(invitation=invitation, actor=request.user)
    except PermissionDenied as exc:
        messages.error(request, _refusal(exc))
    else:
        messages.success(request, "Invitation revoked: nobody can join with it any more.")
    return redirect("members", slug=slug)


def _join(request, invitation, template: str, context: dict):
    """Accept `invitation` for the signed-in user, or make an account for a visitor and accept it;
    the page again (status 400) with what was wrong."""
    if not request.user.is_authenticated and request.POST.get("password") != request.POST.get("password2"):
        return render(request, template, {**context, "errors": {"password2": ["The two passwords differ."]},
                                          "username": request.POST.get("username", "")}, status=400)
    try:
        if request.user.is_authenticated:
            invitations.invitation_accept(invitation=invitation, user=request.user)
        else:
            user = invitations.account_create_and_accept(
                invitation=invitation, username=request.POST.get("username", ""),
                password=request.POST.get("password", ""))
            login(request, user, backend=SIGN_IN_BACKEND)
    except invitations.InvitationUnusable as exc:
        return render(request, "frontend/invitation_unusable.html",
                      {"invitation": invitation, "reason": exc.reason, "message": exc.messages[0]}, status=410)
    except ValidationError as exc:
        errors = dict(exc.message_dict) if hasattr(exc, "error_dict") else {}
        errors["general"] = errors.pop("__all__", []) + ([] if hasattr(exc, "error_dict") else exc.messages)
        return render(request, template, {**context, "errors": errors, "username": request.POST.get("username", "")},
                      status=400)
    messages.success(request, f"You joined {invitation.project.name} as {invitation.get_role_display().lower()}.")
    return redirect("home")


@require_http_methods(["GET", "POST"])
def invitation(request, token: str):
    """An invitation link: its project and role, and a way in (an account or a signed-in join)."""
    found = selectors.invitation_by_token(token=token)
    reason = selectors.invitation_unusable_reason(invitation=found)
    already = (request.user.is_authenticated
               and Membership.objects.filter(project=found.project, user=request.user).exists())
    if reason and not already:
        return render(request, "frontend/invitation_unusable.html",
                      {"invitation": found, "reason": reason, "message": invitations.reason_message(reason)},
                      status=410)
    context = {"invitation": found, "already_member": already}
    if request.method == "POST":
        return _join(request, found, "frontend/invitation.html", context)
    return render(request, "frontend/invitation.html", context)


@require_http_methods(["GET", "POST"])
def join_project(request):
    """Joining by a project's code: typed by a signed-in user, or by a visitor making an account."""
    if request.method != "POST":
        return render(request, "frontend/join_project.html", {"code": request.GET.get("code", "")})
    code = request.POST.get("code", "")
    context = {"code": code}
    found = selectors.invitation_by_code(code=code)
    if found is None:
        return render(request, "frontend/join_project.html",
                      {**context, "errors": {"code": [f"There is no project with the code {code.strip()!r}: check "
                                                      f"it with whoever gave it to you."]},
                       "username": request.POST.get("username", "")}, status=400)
    return _join(request, found, "frontend/join_project.html", context)
