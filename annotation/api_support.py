"""Shared API plumbing: one error shape for every 4xx, pagination, and the API's 404."""
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.views import exception_handler as drf_exception_handler


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500


class ErrorSerializer(serializers.Serializer):
    """Every 4xx answer: a sentence for people and the details for programs."""

    message = serializers.CharField()
    extra = serializers.DictField(required=False)


# The documented 4xx answers of every view: all in the one error shape.
ERRORS = {code: OpenApiResponse(ErrorSerializer) for code in (400, 401, 403, 404)}


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
    return response


def api_not_found(request, *args, **kwargs):
    return JsonResponse({"message": f"No API endpoint at {request.path}.", "extra": {"code": "not_found"}}, status=404)
