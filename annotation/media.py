"""Local media (images and their previews) for the members of a project holding them.

Mounted at MEDIA_URL when STORAGE_BACKEND is local (config/urls.py); on S3 the API hands out signed
URLs instead. Access is decided by `selectors.image_file_check_for_user`.
"""
import mimetypes
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.views.decorators.http import require_safe
from django.views.static import serve
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.settings import api_settings

from annotation import selectors


def _user(request):
    """The session's user, or the API token's (as the API checks tokens, expiry included): scripts
    that read image URLs from the API fetch them with the same `Authorization: Token ...` header."""
    if request.user.is_authenticated:
        return request.user
    for authentication in api_settings.DEFAULT_AUTHENTICATION_CLASSES:
        if not issubclass(authentication, TokenAuthentication):
            continue
        try:
            found = authentication().authenticate(request)
        except AuthenticationFailed:
            return AnonymousUser()
        if found:
            return found[0]
    return AnonymousUser()


@require_safe
def media_file(request, key: str):
    """The stored file `key` for someone who may see it: 403 for nobody signed in, 404 for anyone
    else who may not (or when there is no such file). With MEDIA_INTERNAL_REDIRECT_PREFIX the web
    server sends the bytes (X-Accel-Redirect to its `internal` location)."""
    user = _user(request)
    if not user.is_authenticated:
        raise PermissionDenied("Sign in to see this file.")
    selectors.image_file_check_for_user(user=user, key=key)  # Http404 for a file they may not see

    prefix = settings.MEDIA_INTERNAL_REDIRECT_PREFIX
    if prefix:
        response = HttpResponse(content_type=mimetypes.guess_type(key)[0] or "application/octet-stream")
        response["X-Accel-Redirect"] = prefix + quote(key)
    else:
        response = serve(request, key, document_root=settings.MEDIA_ROOT)
    # Keys are content addresses, so a file never changes; but it is this user's to see, not a cache's.
    patch_cache_control(response, private=True, max_age=3600)
    patch_vary_headers(response, ["Cookie", "Authorization"])
    return response
