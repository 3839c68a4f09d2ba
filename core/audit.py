"""The audit log: one line per change of roles, people's standing, data or jobs.

Services call `audit_record` inside their own transaction, so an entry exists exactly when the
change it describes was committed."""
from django.db.models import QuerySet

from core.models import AuditAction, AuditEntry


def audit_record(*, actor, action: AuditAction | str, target: str, project=None, details: dict | None = None) -> AuditEntry:
    """Record that `actor` (a user, or None for the platform itself) did `action` to `target` (a
    few words naming it), in `project` (anything with `pk` and `slug`) when there is one."""
    person = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    return AuditEntry.objects.create(
        actor=person, actor_username=person.get_username() if person else "",
        project_ref=project.pk if project is not None else None,
        project_slug=project.slug if project is not None else "",
        action=AuditAction(action), target=target[:300], details=details or {})


def audit_entries_for_project(*, project) -> QuerySet[AuditEntry]:
    """The project's entries, newest first; access is the caller's to check."""
    return AuditEntry.objects.filter(project_ref=project.pk).select_related("actor").order_by("-id")
