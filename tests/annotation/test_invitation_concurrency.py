"""Accepting an invitation counts its uses under the invitation's row lock: people racing for the
last uses on a real PostgreSQL never get past `max_uses`."""
import threading

import pytest
from django.db import connection

from annotation import invitations
from annotation.models import Invitation, Membership
from tests.annotation.test_assignment_concurrency import postgres_only  # noqa: F401  (fixture)
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

PEOPLE = 12
USES = 5


def test_people_racing_for_an_invitation_never_exceed_its_uses(postgres_only, project, researcher):  # noqa: F811
    invitation = invitations.invitation_create(project=project, actor=researcher, max_uses=USES)
    people = [UserFactory(username=f"racer{i}") for i in range(PEOPLE)]
    start, joined, refused, errors = threading.Barrier(PEOPLE), [], [], []

    def accept(user):
        try:
            start.wait()
            invitations.invitation_accept(invitation=Invitation.objects.get(pk=invitation.pk), user=user)
            joined.append(user.username)
        except invitations.InvitationUnusable as exc:
            refused.append(exc.reason)
        except Exception as exc:  # surfaced below: a thread must not die silently
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=accept, args=(user,)) for user in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(joined) == USES and refused == ["used_up"] * (PEOPLE - USES)
    assert Invitation.objects.get(pk=invitation.pk).uses == USES
    assert Membership.objects.filter(project=project, user__username__startswith="racer").count() == USES
