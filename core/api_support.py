"""Shared API plumbing: one error shape for every answer under /api/ that is not a success (4xx,
and 503 when the database or the broker is down), and pagination, and the API's 404 (the paginated list view, ListApi, is in core.api: DRF's
generic views read the pagination class named in settings when they are imported). Every app's
api.py builds on it; it knows no domain."""
import logging
import sys

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import OperationalError as DatabaseOperationalError
from django.http import Http404, JsonResponse
from django.views import csrf, defaults
from drf_spectacular.utils import OpenApiResponse
from kombu.exceptions import OperationalError as BrokerOperationalError
from rest_framework import exceptions, serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"


class Pagination(PageNumberPagination):
    """`page` and `page_size` are checked, never ignored: a bad value is a 400 naming the parameter,
    a page past the last a 404."""

    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        return _positive_int_param(self.page_size_query_param, raw, maximum=self.max_page_size)

    def get_page_number(self, request, paginator):
        raw = request.query_params.get(self.page_query_param)
        if raw is None:
            return 1
        if raw in self.last_page_strings:
            return paginator.num_pages
        number = _positive_int_param(self.page_query_param, raw)
        if number > paginator.num_pages:
            raise exceptions.NotFound(f"Page {number} is past the last page ({paginator.num_pages}).")
        return number


def _positive_int_param(name: str, raw: str, *, maximum: int | None = None) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1 or (maximum is not None and value > maximum):
        bounds = f"from 1 to {maximum}" if maximum is not None else "of 1 or more"
        raise exceptions.ValidationError({name: [f"Must be a whole number {bounds}, not {raw!r}."]})
    return value


class ErrorSerializer(serializers.Serializer):
    """Every 4xx answer: a sentence for people and the details for programs."""

    message = serializers.CharField()
    extra = serializers.DictField(required=False)


# The documented 4xx answers of every view: all in the one error shape.
ERRORS = {code: OpenApiResponse(ErrorSerializer) for code in (400, 401, 403, 404)}
# The answer of a write to an archived project (read-only until unarchived).
ARCHIVED = {409: OpenApiResponse(ErrorSerializer, description="The project is archived: read-only.")}


def document_unsupported_media_type(result, generator, request, public):
    """drf-spectacular postprocessing hook: every operation that reads a body answers 415, in the
    error shape, to a body of a media type it does not parse (or to one sent without any)."""
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
             "description": "The body's media type is not one this operation reads."}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                operation["responses"].setdefault("415", error)
    return result


def _first_message(detail) -> str:
    if isinstance(detail, dict):
        for field, value in detail.items():
            inner = _first_message(value)
            return inner if field in ("non_field_errors", "__all__", "detail") else f"{field}: {inner}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages})
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is None or response.status_code >= 500:
        return response
    detail = response.data
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"message": f"Invalid input: {_first_message(detail)}", "extra": {"fields": detail}}
    else:
        message = detail.get("detail") if isinstance(detail, dict) else detail
        code = getattr(exc.detail, "code", None) or getattr(exc, "default_code", "error")
        response.data = {"message": str(message), "extra": {"code": code}}
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            response.data["extra"]["retry_after_seconds"] = exc.wait
    return response


def api_not_found(request, *args, **kwargs):
    return JsonResponse({"message": f"No API endpoint at {request.path}.", "extra": {"code": "not_found"}}, status=404)


# --- answers made outside DRF's views, for every path under /api/ ---------------------------

def error_response(status: int, message: str, code: str, **extra) -> JsonResponse:
    """An answer in the API's error shape, for code that runs outside DRF's exception handler."""
    return JsonResponse({"message": message, "extra": {"code": code, **extra}}, status=status)


def is_api_request(request) -> bool:
    return request.path_info.startswith(API_PREFIX)


def _broker_errors() -> tuple[type[BaseException], ...]:
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:  # a broker other than Redis
        return (BrokerOperationalError,)
    return (BrokerOperationalError, RedisConnectionError, RedisTimeoutError)


def _answer_for(exc: BaseException) -> JsonResponse | None:
    """The error-shape answer to an exception no view answered; None for a bug (a 500)."""
    if isinstance(exc, RequestDataTooBig):
        return error_response(413, "The request body is too large.", "request_too_large")
    if isinstance(exc, DatabaseOperationalError):
        logger.warning("API answered 503, the database is unavailable: %s", exc)
        return error_response(503, "The database is unavailable; try again shortly.", "database_unavailable")
    if isinstance(exc, _broker_errors()):
        logger.warning("API answered 503, the message broker is unavailable: %s", exc)
        return error_response(503, "The message broker is unavailable; try again shortly.", "broker_unavailable")
    return None


class ApiErrorMiddleware:
    """Answers in the error shape what a view under /api/ raised and DRF left unanswered: a body
    over DATA_UPLOAD_MAX_MEMORY_SIZE (413), the database or the broker down (503)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        return _answer_for(exception) if is_api_request(request) else None


def csrf_failure(request, reason=""):
    """CSRF_FAILURE_VIEW: the error shape under /api/, Django's page elsewhere."""
    if is_api_request(request):
        return error_response(403, f"CSRF Failed: {reason}", "csrf_failed")
    return csrf.csrf_failure(request, reason=reason)


def bad_request(request, exception):
    """handler400 (DEBUG off): what was refused before any view ran, such as a body too large for
    the CSRF check to read."""
    if not is_api_request(request):
        return defaults.bad_request(request, exception)
    return _answer_for(exception) or error_response(400, "Bad request.", "bad_request")


def server_error(request):
    """handler500 (DEBUG off): the error shape under /api/, with 503 when the database or the broker
    is down (raised in a middleware, out of ApiErrorMiddleware's reach)."""
    if not is_api_request(request):
        return defaults.server_error(request)
    exc = sys.exc_info()[1]
    return (exc and _answer_for(exc)) or error_response(500, "Internal server error.", "server_error")
