"""Signing in: API tokens that expire (API_TOKEN_TTL_HOURS) and can be revoked, and the answer to
a sign-in refused after repeated failures (django-axes counts them; see LOGIN_FAILURE_LIMIT).

Imported by DRF's settings while rest_framework.views is still loading: nothing here may import
it at module level (core.api_support does)."""
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.shortcuts import render
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token


def api_token_expires_at(token: Token) -> datetime | None:
    """When the token stops working; None where tokens never expire (API_TOKEN_TTL_HOURS=0)."""
    hours = settings.API_TOKEN_TTL_HOURS
    return token.created + timedelta(hours=hours) if hours else None


def _expired(token: Token) -> bool:
    expires_at = api_token_expires_at(token)
    return expires_at is not None and expires_at <= timezone.now()


class ExpiringTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, refusing a token older than API_TOKEN_TTL_HOURS with a 401 that
    says it expired."""

    def authenticate_credentials(self, key):
        user, token = super().authenticate_credentials(key)
        if _expired(token):
            raise exceptions.AuthenticationFailed(
                f"Token expired at {api_token_expires_at(token).isoformat()}; obtain a new one from "
                f"POST /api/v1/auth/token/.", code="token_expired")
        return user, token


@transaction.atomic
def api_token_obtain(*, user) -> Token:
    """The user's API token (one per user): the current one, or a new one where it has expired."""
    token, _ = Token.objects.get_or_create(user=user)
    if _expired(token):
        Token.objects.filter(pk=token.pk).delete()
        token, _ = Token.objects.get_or_create(user=user)
    return token


@transaction.atomic
def api_token_revoke(*, user) -> bool:
    """Deletes the user's API token: every client holding it is refused from now on. False when the
    user had none."""
    deleted, _ = Token.objects.filter(user=user).delete()
    return bool(deleted)


def sign_in_client_address(request) -> str:
    """AXES_CLIENT_IP_CALLABLE: the address failed sign-ins are counted by. Behind the trusted proxy
    (DJANGO_TRUST_PROXY_HEADERS) every request comes from the proxy, and the client is the last
    address of X-Forwarded-For, the one the proxy wrote itself (earlier ones are the client's say)."""
    if getattr(settings, "TRUST_PROXY_HEADERS", False):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")[-1].strip()
        if forwarded:
            return forwarded
    return request.META.get("REMOTE_ADDR", "")


def sign_in_retry_after_seconds() -> int:
    """How long a locked-out sign-in waits: at most the cool-off, counted from the failure that
    locked it (failures during the lock-out do not extend it)."""
    return int(settings.AXES_COOLOFF_TIME.total_seconds())


def sign_in_locked_out_message() -> str:
    minutes = -(-sign_in_retry_after_seconds() // 60)
    return (f"Too many failed sign-in attempts for this account from this address. "
            f"Try again in {minutes} minute{'s' if minutes != 1 else ''}.")


def sign_in_lockout_response(request, original_response=None, credentials=None):
    """AXES_LOCKOUT_CALLABLE: a locked-out sign-in is answered 429 with Retry-After; under /api/ in
    the error shape, elsewhere with the sign-in page saying why and for how long."""
    from django.contrib.auth.forms import AuthenticationForm

    from core.api_support import error_response, is_api_request

    wait = sign_in_retry_after_seconds()
    if is_api_request(request):
        response = error_response(429, sign_in_locked_out_message(), "locked_out", retry_after_seconds=wait)
    else:
        username = (credentials or {}).get("username") or request.POST.get("username", "")
        form = AuthenticationForm(request, initial={"username": username})
        next_url = request.POST.get("next") or request.GET.get("next", "")
        response = render(request, "registration/login.html",
                          {"form": form, "next": next_url, "lockout_message": sign_in_locked_out_message()},
                          status=429)
    response["Retry-After"] = str(wait)
    return response
