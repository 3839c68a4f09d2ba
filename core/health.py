"""Whether this process reaches what it cannot work without: the database and the broker."""
import logging

from celery import current_app
from django.db import DatabaseError, connection
from django.http import JsonResponse

logger = logging.getLogger(__name__)

# A health check answers within seconds even when a part is down (a load balancer's probe waits
# little); a broker that refuses connections fails at once.
BROKER_TIMEOUT_S = 2.0


def health_check() -> dict[str, str]:
    """'ok' or 'unavailable' for each part; the reasons go to the log, not to anonymous callers."""
    return {"database": _database(), "broker": _broker()}


def _database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        logger.warning("Health check: the database is unavailable: %s", exc)
        return "unavailable"
    return "ok"


def _broker() -> str:
    try:
        with current_app.connection_for_write(connect_timeout=BROKER_TIMEOUT_S) as broker:
            broker.ensure_connection(max_retries=1, interval_start=0, timeout=BROKER_TIMEOUT_S)
    except Exception as exc:  # kombu wraps most transport errors, not all: any failure means no broker
        logger.warning("Health check: the broker is unavailable: %s", exc)
        return "unavailable"
    return "ok"


def healthz(request):
    """200 when every part is ok, else 503; the body names each part's state."""
    checks = health_check()
    healthy = all(state == "ok" for state in checks.values())
    return JsonResponse({"status": "ok" if healthy else "unavailable", "checks": checks},
                        status=200 if healthy else 503)
