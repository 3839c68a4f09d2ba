"""Signing in: failed attempts lock an account out from an address for a while (token endpoint and
login page alike), API tokens expire, and a user can revoke theirs."""
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.conftest import client_for

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"  # tests.factories.UserFactory's


def assert_error_shape(response, status, *words):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"message", "extra"} and isinstance(body["message"], str)
    for word in words:
        assert word in body["message"]
    return body


@pytest.fixture
def failure_limit(settings):
    settings.AXES_FAILURE_LIMIT = 3
    return 3


def obtain(password, address="10.0.0.1", username="rita"):
    return APIClient(REMOTE_ADDR=address).post("/api/v1/auth/token/", {"username": username, "password": password})


# --- lock-out after failed sign-ins -----------------------------------------------------------

def test_token_endpoint_answers_429_with_when_to_retry_once_an_account_failed_too_often(researcher, failure_limit):
    for _ in range(failure_limit - 1):
        assert_error_shape(obtain("wrong"), 400, "Unable to log in")

    locked = obtain("wrong")
    right_password = obtain(PASSWORD)

    body = assert_error_shape(locked, 429, "Too many failed sign-in attempts", "15 minutes")
    assert body["extra"] == {"code": "locked_out", "retry_after_seconds": 900}
    assert locked["Retry-After"] == "900"
    assert_error_shape(right_password, 429, "Too many failed sign-in attempts")


def test_a_lock_out_holds_that_account_from_that_address_only(researcher, failure_limit):
    for _ in range(failure_limit):
        obtain("wrong", address="10.0.0.1")

    assert obtain(PASSWORD, address="10.0.0.1").status_code == 429
    assert obtain(PASSWORD, address="10.0.0.2").status_code == 200  # the person, elsewhere
    assert obtain("wrong", username="otto", address="10.0.0.1").status_code == 400  # another account, same address


def test_behind_the_trusted_proxy_the_address_counted_is_the_forwarded_one(researcher, failure_limit, settings):
    settings.TRUST_PROXY_HEADERS = True
    via_proxy = APIClient(REMOTE_ADDR="172.18.0.5")
    for _ in range(failure_limit):
        via_proxy.post("/api/v1/auth/token/", {"username": "rita", "password": "wrong"},
                       HTTP_X_FORWARDED_FOR="198.51.100.7")

    def sign_in(forwarded_for):
        return via_proxy.post("/api/v1/auth/token/", {"username": "rita", "password": PASSWORD},
                              HTTP_X_FORWARDED_FOR=forwarded_for).status_code

    assert sign_in("198.51.100.7") == 429
    assert sign_in("203.0.113.9") == 200
    assert sign_in("203.0.113.9, 198.51.100.7") == 429  # a client cannot pick its address


def test_a_lock_out_ends_after_the_cool_off(researcher, failure_limit):
    for _ in range(failure_limit):
        obtain("wrong")
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))

    assert obtain(PASSWORD).status_code == 200


def test_login_page_answers_429_with_a_message_once_an_account_failed_too_often(researcher, failure_limit):
    client = Client(REMOTE_ADDR="10.0.0.1")
    for _ in range(failure_limit - 1):
        response = client.post("/accounts/login/", {"username": "rita", "password": "wrong"})
        assert response.status_code == 200 and b'data-testid="login-error"' in response.content

    locked = client.post("/accounts/login/", {"username": "rita", "password": "wrong"})
    right_password = client.post("/accounts/login/", {"username": "rita", "password": PASSWORD})

    for response in (locked, right_password):
        assert response.status_code == 429 and response["Retry-After"] == "900"
        assert b'data-testid="login-locked"' in response.content
        assert b"Too many failed sign-in attempts" in response.content and b"15 minutes" in response.content
    assert "_auth_user_id" not in client.session


def test_failures_on_the_login_page_and_the_token_endpoint_count_together(researcher, failure_limit):
    client = Client(REMOTE_ADDR="10.0.0.1")
    for _ in range(failure_limit - 1):
        client.post("/accounts/login/", {"username": "rita", "password": "wrong"})

    assert obtain("wrong").status_code == 429


def test_a_successful_sign_in_clears_earlier_failures(researcher, failure_limit):
    client = Client(REMOTE_ADDR="10.0.0.1")
    for _ in range(failure_limit - 1):
        client.post("/accounts/login/", {"username": "rita", "password": "wrong"})
    assert client.post("/accounts/login/", {"username": "rita", "password": PASSWORD}).status_code == 302
    client.post("/accounts/logout/")

    response = client.post("/accounts/login/", {"username": "rita", "password": "wrong"})

    assert response.status_code == 200


# --- token expiry -----------------------------------------------------------------------------

def _age(token, hours):
    Token.objects.filter(pk=token.pk).update(created=timezone.now() - timedelta(hours=hours))


def test_an_expired_token_is_refused_with_401_saying_it_expired(researcher, settings):
    settings.API_TOKEN_TTL_HOURS = 24
    client = client_for(researcher)
    _age(Token.objects.get(user=researcher), hours=25)

    body = assert_error_shape(client.get("/api/v1/projects/"), 401, "expired", "POST /api/v1/auth/token/")

    assert body["extra"]["code"] == "token_expired"


def test_a_token_younger_than_the_ttl_works_and_says_when_it_expires(researcher, settings):
    settings.API_TOKEN_TTL_HOURS = 24
    response = obtain(PASSWORD)
    token = Token.objects.get(user=researcher)
    _age(token, hours=23)

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    assert client.get("/api/v1/projects/").status_code == 200
    assert response.json()["expires_at"] == (token.created + timedelta(hours=24)).isoformat().replace("+00:00", "Z")


def test_a_ttl_of_zero_means_tokens_never_expire(researcher, settings):
    settings.API_TOKEN_TTL_HOURS = 0
    client = client_for(researcher)
    _age(Token.objects.get(user=researcher), hours=24 * 3650)

    assert client.get("/api/v1/projects/").status_code == 200
    assert obtain(PASSWORD).json()["expires_at"] is None


def test_signing_in_again_after_expiry_issues_a_new_token(researcher, settings):
    settings.API_TOKEN_TTL_HOURS = 24
    old = Token.objects.create(user=researcher)
    _age(old, hours=25)

    new_key = obtain(PASSWORD).json()["token"]

    assert new_key != old.key and not Token.objects.filter(key=old.key).exists()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {new_key}")
    assert client.get("/api/v1/projects/").status_code == 200


def test_by_default_a_token_works_for_30_days(researcher):
    client = client_for(researcher)
    token = Token.objects.get(user=researcher)

    _age(token, hours=30 * 24 - 1)
    assert client.get("/api/v1/projects/").status_code == 200
    _age(token, hours=30 * 24 + 1)
    assert client.get("/api/v1/projects/").status_code == 401


# --- revocation -------------------------------------------------------------------------------

def test_delete_revokes_the_token_used_and_it_is_refused_afterwards(researcher):
    client = client_for(researcher)

    assert client.delete("/api/v1/auth/token/").status_code == 204
    assert_error_shape(client.get("/api/v1/projects/"), 401, "Invalid token")
    assert not Token.objects.filter(user=researcher).exists()


def test_a_signed_in_browser_session_can_revoke_the_users_token(researcher):
    Token.objects.create(user=researcher)
    client = APIClient()
    client.force_login(researcher)

    assert client.delete("/api/v1/auth/token/").status_code == 204
    assert not Token.objects.filter(user=researcher).exists()


def test_revoking_needs_credentials(researcher):
    assert_error_shape(APIClient().delete("/api/v1/auth/token/"), 401)


def test_a_stale_token_header_does_not_stop_a_password_sign_in(researcher):
    client = APIClient(REMOTE_ADDR="10.0.0.1")
    client.credentials(HTTP_AUTHORIZATION="Token revoked-long-ago")

    assert client.post("/api/v1/auth/token/", {"username": "rita", "password": PASSWORD}).status_code == 200
