"""Reads of curation with logic: the one place access to a filter run is decided."""
from rest_framework.exceptions import NotFound

from annotation.selectors import MANAGER_ROLES, project_role
from curation.models import FilterRun


def filter_run_get_for_user(*, user, run_id: int) -> FilterRun:
    """The run, for the researchers and admins of its project; NotFound for anyone else."""
    run = FilterRun.objects.select_related("project", "created_by").filter(pk=run_id).first()
    if run is None or project_role(user=user, project=run.project) not in MANAGER_ROLES:
        raise NotFound(f"No filter run {run_id} that you can see.")
    return run
