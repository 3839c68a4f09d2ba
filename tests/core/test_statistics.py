"""Whoever writes in bulk refreshes the planner statistics of what it wrote (PostgreSQL only)."""
import json

import pytest
from celery import current_app
from django.db import connection

from annotation.services import import_job_create, import_job_run
from curation.services import filter_run_create, filter_run_execute
from tests.conftest import wait_for
from tests.curation.test_filter_runs import simulated_crowd

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="ANALYZE and pg_stat_user_tables are PostgreSQL's"),
    pytest.mark.django_db(transaction=True),  # statistics describe committed rows
]


@pytest.fixture(autouse=True)
def nothing_sent(monkeypatch):
    """The jobs run in-process below: their tasks are not sent to a broker on commit."""
    monkeypatch.setattr(current_app._get_current_object(), "send_task", lambda *args, **kwargs: None)


def database_now():
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


def analysed_since(since, *tables) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT relname FROM pg_stat_user_tables WHERE relname = ANY(%s) AND last_analyze >= %s",
                       [list(tables), since])
        return {row[0] for row in cursor.fetchall()} == set(tables)


def test_an_import_job_analyses_the_images_and_comparisons_it_wrote(project, researcher, images_dir, settings):
    settings.IMPORT_LOCAL_ROOTS = [str(images_dir.parent)]
    manifest = "\n".join(json.dumps({"prompt": "two cats on a sofa", "image": f"{n}.png"}) for n in "abcd").encode()
    job = import_job_create(project=project, creator=researcher, manifest=manifest, images_root=str(images_dir))
    started = database_now()

    assert import_job_run(job_id=job.pk).status == "succeeded"

    # PostgreSQL may publish a backend's statistics a moment late: poll.
    wait_for(lambda: analysed_since(started, "annotation_image", "annotation_comparison"), timeout=10,
             what="last_analyze of annotation_image and annotation_comparison")


def test_a_filter_run_analyses_the_verdicts_it_wrote(project):
    simulated_crowd(project, units=20)
    run = filter_run_create(project=project, name="nightly", rules=None)
    started = database_now()

    assert filter_run_execute(run_id=run.pk).status == "succeeded"

    wait_for(lambda: analysed_since(started, "curation_unitverdict"), timeout=10,
             what="last_analyze of curation_unitverdict")
