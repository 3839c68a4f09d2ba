"""People (issue 14, item 3): the members page, invitation links and join codes, through the
services, the API and the pages, with who may do what and every way an invitation is refused."""
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.utils import timezone

from annotation import invitations
from annotation.models import Invitation, Membership
from annotation.services import membership_set, membership_suspend
from core.models import AuditAction, AuditEntry
from curation.models import FilterRun
from tests.annotation.test_api import assert_error_shape
from tests.conftest import client_for
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
PASSWORD = "a long enough passphrase"


@pytest.fixture
def admin_member(project):
    return membership_set(project=project, user=UserFactory(username="adam"), role="admin").user


@pytest.fixture
def invite(project, researcher):
    return invitations.invitation_create(project=project, actor=researcher, role="annotator", max_uses=2)


def page_client(user=None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def role_of(project, username):
    return Membership.objects.filter(project=project, user__username=username).values_list("role", flat=True).first()


# --- services -------------------------------------------------------------------------------

def test_a_researcher_invites_annotators_and_researchers_and_the_creation_is_audited(project, researcher):
    for role in ("annotator", "researcher"):
        invitation = invitations.invitation_create(project=project, actor=researcher, role=role)
        assert invitation.role == role and len(invitation.token) >= 40 and invitation.uses == 0
    assert AuditEntry.objects.filter(action=AuditAction.INVITATION_CREATED, actor=researcher).count() == 2


def test_an_invitation_to_a_role_higher_than_the_inviters_is_refused(project, researcher):
    with pytest.raises(PermissionDenied, match="role higher than your own"):
        invitations.invitation_create(project=project, actor=researcher, role="admin")
    assert not Invitation.objects.exists()


def test_an_admin_may_invite_admins(project, admin_member):
    invitation = invitations.invitation_create(project=project, actor=admin_member, role="admin")
    user = UserFactory(username="newadmin")
    invitations.invitation_accept(invitation=invitation, user=user)
    assert role_of(project, "newadmin") == "admin"


def test_an_annotator_may_not_invite_anyone(project, annotator):
    with pytest.raises(PermissionDenied):
        invitations.invitation_create(project=project, actor=annotator, role="annotator")


def test_accepting_counts_a_use_joins_with_the_role_and_is_audited(project, invite):
    user = UserFactory(username="newbie")
    invitations.invitation_accept(invitation=invite, user=user)
    invite.refresh_from_db()
    assert invite.uses == 1 and role_of(project, "newbie") == "annotator"
    entry = AuditEntry.objects.get(action=AuditAction.INVITATION_ACCEPTED)
    assert entry.actor == user and entry.details["invited_by"] == "rita"


def test_a_member_opening_an_invitation_keeps_their_role_and_uses_nothing(project, invite, researcher):
    invitations.invitation_accept(invitation=invite, user=researcher)
    invite.refresh_from_db()
    assert invite.uses == 0 and role_of(project, "rita") == "researcher"


@pytest.mark.parametrize("state", ["expired", "revoked", "used_up"])
def test_an_unusable_invitation_is_refused_with_its_reason(project, invite, researcher, state):
    if state == "expired":
        Invitation.objects.filter(pk=invite.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif state == "revoked":
        invitations.invitation_revoke(invitation=invite, actor=researcher)
    else:
        Invitation.objects.filter(pk=invite.pk).update(uses=2)
    with pytest.raises(invitations.InvitationUnusable) as refused:
        invitations.invitation_accept(invitation=invite, user=UserFactory(username="late"))
    assert refused.value.reason == state
    assert role_of(project, "late") is None


def test_revoking_is_audited_and_a_researcher_may_not_revoke_an_admin_invitation(project, researcher, admin_member):
    mine = invitations.invitation_create(project=project, actor=researcher)
    invitations.invitation_revoke(invitation=mine, actor=researcher)
    assert AuditEntry.objects.filter(action=AuditAction.INVITATION_REVOKED, target=f"invitation {mine.pk}").exists()
    theirs = invitations.invitation_create(project=project, actor=admin_member, role="admin")
    with pytest.raises(PermissionDenied):
        invitations.invitation_revoke(invitation=theirs, actor=researcher)


def test_a_join_code_is_for_annotators_only(project, researcher):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="join code"):
        invitations.invitation_create(project=project, actor=researcher, role="researcher", join_code=True)
    coded = invitations.invitation_create(project=project, actor=researcher, join_code=True, max_uses=50)
    assert len(coded.code) == invitations.JOIN_CODE_LENGTH


def test_a_new_account_needs_a_password_the_validators_accept_and_a_free_username(project, invite):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as refused:
        invitations.account_create_and_accept(invitation=invite, username="rita", password="short")
    assert set(refused.value.message_dict) == {"username", "password"}
    assert not get_user_model().objects.filter(username="x").exists()


def test_no_account_is_left_behind_when_the_invitation_is_used_up(project, invite):
    Invitation.objects.filter(pk=invite.pk).update(uses=2)
    with pytest.raises(invitations.InvitationUnusable):
        invitations.account_create_and_accept(invitation=invite, username="ghost", password=PASSWORD)
    assert not get_user_model().objects.filter(username="ghost").exists()


def test_the_last_use_is_taken_once_under_the_row_lock(project, researcher):
    """Accepting reads the uses under select_for_update: a second acceptance of a one-use link sees it spent."""
    one = invitations.invitation_create(project=project, actor=researcher, max_uses=1)
    invitations.invitation_accept(invitation=one, user=UserFactory(username="first"))
    stale = Invitation.objects.get(pk=one.pk)
    stale.uses = 0  # a copy read before the first acceptance
    with pytest.raises(invitations.InvitationUnusable):
        invitations.invitation_accept(invitation=stale, user=UserFactory(username="second"))


# --- the API ----------------------------------------------------------------------------------

def test_the_api_creates_lists_and_revokes_invitations(project, researcher):
    client = client_for(researcher)
    created = client.post("/api/v1/projects/cats/invitations/", {"role": "researcher", "max_uses": 3}, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["url"].endswith(f"/invite/{body['token']}/") and body["state"] == "usable" and body["max_uses"] == 3
    listed = client.get("/api/v1/projects/cats/invitations/").json()
    assert [row["id"] for row in listed["results"]] == [body["id"]]
    revoked = client.post(f"/api/v1/projects/cats/invitations/{body['id']}/revoke/")
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"


def test_the_api_refuses_an_invitation_above_the_callers_role_in_the_error_shape(project, researcher):
    answer = client_for(researcher).post("/api/v1/projects/cats/invitations/", {"role": "admin"}, format="json")
    assert answer.status_code == 403
    assert_error_shape(answer, answer.status_code)
    assert "role higher than your own" in answer.json()["message"]


def test_the_api_emails_the_link_where_smtp_is_configured(project, researcher, settings):
    settings.EMAIL_HOST = "smtp.example.org"
    answer = client_for(researcher).post("/api/v1/projects/cats/invitations/",
                                         {"email": "colleague@example.org"}, format="json")
    assert answer.json()["emailed"] is True
    assert len(mail.outbox) == 1 and answer.json()["url"] in mail.outbox[0].body
    assert mail.outbox[0].to == ["colleague@example.org"]


def test_without_smtp_nothing_is_emailed(project, researcher, settings):
    settings.EMAIL_HOST = ""
    answer = client_for(researcher).post("/api/v1/projects/cats/invitations/",
                                         {"email": "colleague@example.org"}, format="json")
    assert answer.json()["emailed"] is False and mail.outbox == []


@pytest.mark.parametrize("who, expected", [("annotator", 403), ("outsider", 404), ("anonymous", 401)])
def test_invitation_endpoints_are_for_the_projects_researchers_and_admins(request, project, invite, who, expected):
    user = None if who == "anonymous" else request.getfixturevalue(who)
    client = client_for(user)
    for answer in (client.get("/api/v1/projects/cats/invitations/"),
                   client.post("/api/v1/projects/cats/invitations/", {"role": "annotator"}, format="json"),
                   client.post(f"/api/v1/projects/cats/invitations/{invite.pk}/revoke/")):
        assert answer.status_code in ((401, 403) if expected == 401 else (expected,)), answer.content
        assert_error_shape(answer, answer.status_code)
    invite.refresh_from_db()
    assert invite.revoked_at is None and Invitation.objects.count() == 1


def test_the_api_rejects_bad_numbers(project, researcher):
    answer = client_for(researcher).post("/api/v1/projects/cats/invitations/", {"max_uses": 0, "expires_in_days": 999},
                                         format="json")
    assert answer.status_code == 400
    assert set(answer.json()["extra"]["fields"]) == {"max_uses", "expires_in_days"}


# --- the members page ---------------------------------------------------------------------------

def test_the_members_page_shows_roles_pseudonyms_status_and_says_no_filter_run_yet(project, researcher, annotator):
    membership_suspend(project=project, user=annotator, reason="clicked at random", actor=researcher)
    page = page_client(researcher).get("/projects/cats/members/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "no filter run yet" in html
    assert str(annotator.annotator_profile.pseudonym) in html
    assert "Suspended</strong>: clicked at random" in html


def test_the_members_page_takes_agreement_and_gold_accuracy_from_the_latest_succeeded_run(project, researcher,
                                                                                           annotator):
    FilterRun.objects.create(project=project, name="strict", version=1, rules={}, status="failed", summary={})
    run = FilterRun.objects.create(project=project, name="main", version=1, rules={}, status="succeeded",
                                   finished_at=timezone.now(), summary={
        "raters": [{"rater": "anna", "agreement": 0.8125, "gold_accuracy": 0.5, "gold_answers": 4, "judgments": 9}]})
    html = page_client(researcher).get("/projects/cats/members/").content.decode()
    assert f"filter run\n      <a href=\"/filter-runs/{run.pk}/\">#{run.pk}</a>" in html
    assert "0.81" in html and "0.50" in html


@pytest.mark.parametrize("who, expected", [("annotator", 403), ("outsider", 404)])
def test_the_people_pages_are_for_researchers_and_admins(request, project, invite, who, expected):
    client = page_client(request.getfixturevalue(who))
    assert client.get("/projects/cats/members/").status_code == expected
    assert client.post("/projects/cats/members/anna/remove/").status_code in (expected, 404)
    assert client.post("/projects/cats/invitations/", {"role": "annotator"}).status_code == expected
    assert client.post(f"/projects/cats/invitations/{invite.pk}/revoke/").status_code == expected
    assert Invitation.objects.count() == 1 and Invitation.objects.get().revoked_at is None


def test_an_anonymous_visitor_is_sent_to_sign_in_for_the_members_page(project, invite):
    client = page_client()
    for answer in (client.get("/projects/cats/members/"), client.post("/projects/cats/invitations/"),
                   client.post("/projects/cats/members/rita/remove/")):
        assert answer.status_code == 302 and "/accounts/login/" in answer["Location"]


def test_a_researcher_is_shown_why_they_cannot_make_someone_admin(project, researcher, annotator):
    client = page_client(researcher)
    answer = client.post("/projects/cats/members/anna/role/", {"role": "admin"}, follow=True)
    assert "Only an admin of project" in answer.content.decode()
    assert role_of(project, "anna") == "annotator"


def test_page_actions_suspend_reinstate_change_role_and_remove_as_the_signed_in_user(project, researcher, annotator):
    client = page_client(researcher)
    client.post("/projects/cats/members/anna/suspend/", {"reason": "spam"})
    assert Membership.objects.get(user=annotator).status == "suspended"
    client.post("/projects/cats/members/anna/reinstate/")
    assert Membership.objects.get(user=annotator).status == "active"
    client.post("/projects/cats/members/anna/role/", {"role": "researcher"})
    assert role_of(project, "anna") == "researcher"
    client.post("/projects/cats/members/anna/remove/")
    assert role_of(project, "anna") is None
    actions = list(AuditEntry.objects.filter(actor=researcher, target="anna").values_list("action", flat=True))
    assert set(actions) == {"suspended", "reinstated", "role_changed", "member_removed"}


def test_a_suspension_needs_a_reason(project, researcher, annotator):
    answer = page_client(researcher).post("/projects/cats/members/anna/suspend/", {"reason": " "}, follow=True)
    assert "Give a reason" in answer.content.decode()
    assert Membership.objects.get(user=annotator).status == "active"


def test_the_page_refuses_an_invitation_above_the_inviters_role(project, researcher):
    answer = page_client(researcher).post("/projects/cats/invitations/", {"role": "admin", "expires_in_days": "7",
                                                                          "max_uses": "1"}, follow=True)
    assert "role higher than your own" in answer.content.decode()
    assert not Invitation.objects.exists()


def test_the_page_emails_an_invitation_where_smtp_is_configured(project, researcher, settings):
    settings.EMAIL_HOST = "smtp.example.org"
    answer = page_client(researcher).post("/projects/cats/invitations/", {
        "role": "annotator", "expires_in_days": "7", "max_uses": "1", "email": "col@example.org"}, follow=True)
    assert "e-mailed to col@example.org" in answer.content.decode()
    assert Invitation.objects.get().token in mail.outbox[0].body


# --- opening an invitation, joining by code ------------------------------------------------------

def test_a_visitor_sees_the_project_and_role_and_joins_with_a_new_account(project, invite):
    client = page_client()
    shown = client.get(f"/invite/{invite.token}/").content.decode()
    assert "Cats" in shown and "annotator" in shown
    answer = client.post(f"/invite/{invite.token}/", {"username": "newbie", "password": PASSWORD,
                                                       "password2": PASSWORD})
    assert answer.status_code == 302 and answer["Location"] == "/"
    assert role_of(project, "newbie") == "annotator"
    assert client.get("/").status_code == 200  # signed in


def test_a_weak_password_or_a_mismatch_is_shown_and_nothing_is_created(project, invite):
    client = page_client()
    weak = client.post(f"/invite/{invite.token}/", {"username": "newbie", "password": "abc", "password2": "abc"})
    assert weak.status_code == 400 and "too short" in weak.content.decode()
    differ = client.post(f"/invite/{invite.token}/", {"username": "newbie", "password": PASSWORD, "password2": "x"})
    assert differ.status_code == 400 and "passwords differ" in differ.content.decode()
    assert not get_user_model().objects.filter(username="newbie").exists()


def test_a_signed_in_user_joins_directly(project, invite):
    other = UserFactory(username="colleague")
    client = page_client(other)
    assert "Join the project" in client.get(f"/invite/{invite.token}/").content.decode()
    client.post(f"/invite/{invite.token}/")
    assert role_of(project, "colleague") == "annotator"


@pytest.mark.parametrize("state, words", [("expired", "has expired"), ("revoked", "was revoked"),
                                          ("used_up", "is used up")])
def test_an_unusable_invitation_link_says_which(project, invite, researcher, state, words):
    if state == "expired":
        Invitation.objects.filter(pk=invite.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    elif state == "revoked":
        invitations.invitation_revoke(invitation=invite, actor=researcher)
    else:
        Invitation.objects.filter(pk=invite.pk).update(uses=2)
    client = page_client()
    for answer in (client.get(f"/invite/{invite.token}/"),
                   client.post(f"/invite/{invite.token}/", {"username": "late", "password": PASSWORD,
                                                             "password2": PASSWORD})):
        assert answer.status_code == 410 and words in answer.content.decode()
    assert not get_user_model().objects.filter(username="late").exists()


def test_an_unknown_invitation_token_is_not_found(db):
    assert page_client().get("/invite/not-a-token/").status_code == 404


def test_joining_by_code_as_a_new_account_and_as_a_signed_in_user(project, researcher):
    coded = invitations.invitation_create(project=project, actor=researcher, join_code=True, max_uses=10)
    typed = f" {coded.code[:4].lower()}-{coded.code[4:]} "
    answer = page_client().post("/join-project/", {"code": typed, "username": "crowd1", "password": PASSWORD,
                                                   "password2": PASSWORD})
    assert answer.status_code == 302 and role_of(project, "crowd1") == "annotator"
    page_client(UserFactory(username="crowd2")).post("/join-project/", {"code": coded.code})
    assert role_of(project, "crowd2") == "annotator"
    coded.refresh_from_db()
    assert coded.uses == 2


def test_a_join_code_that_does_not_exist_is_refused(project):
    client = page_client(UserFactory(username="crowd"))
    answer = client.post("/join-project/", {"code": "NOPE1234"})
    assert answer.status_code == 400 and "There is no project with the code" in answer.content.decode()
    assert not Membership.objects.filter(user__username="crowd").exists()


def test_an_outsiders_view_of_an_invitation_shows_no_member_list(project, invite, annotator):
    html = page_client().get(f"/invite/{invite.token}/").content.decode()
    assert "anna" not in html


def test_a_mail_server_that_refuses_leaves_the_invitation_to_copy(project, researcher, settings, monkeypatch):
    import smtplib

    def refuse(*args, **kwargs):
        raise smtplib.SMTPRecipientsRefused({"col@example.org": (550, b"no such user")})

    settings.EMAIL_HOST = "smtp.example.org"
    monkeypatch.setattr(invitations, "send_mail", refuse)
    answer = page_client(researcher).post("/projects/cats/invitations/", {
        "role": "annotator", "expires_in_days": "7", "max_uses": "1", "email": "col@example.org"}, follow=True)
    assert "Sending it to col@example.org failed: copy the link" in answer.content.decode()
    assert Invitation.objects.count() == 1


def test_a_malformed_address_creates_nothing(project, researcher):
    answer = page_client(researcher).post("/projects/cats/invitations/", {
        "role": "annotator", "expires_in_days": "7", "max_uses": "1", "email": "not an address"}, follow=True)
    assert "valid email address" in answer.content.decode()
    assert not Invitation.objects.exists()
