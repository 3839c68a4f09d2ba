import re
import threading

from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.renderers import JSONRenderer

from core.api_support import api_not_found
from annotation.media import media_file
from core.health import healthz

# Outside views (DEBUG off): the API's error shape under /api/, Django's pages elsewhere.
handler400 = "core.api_support.bad_request"
handler500 = "core.api_support.server_error"


class SchemaView(SpectacularAPIView):
    """The OpenAPI schema, generated for one request at a time: drf-spectacular's generator is not
    thread-safe (its extensions resolve their target classes into class attributes on first use,
    tfranzel/drf-spectacular#1122), and concurrent first requests to a threaded server answered
    500. Errors are JSON in the API's error shape, whatever format the schema was asked in."""

    _generating = threading.Lock()

    def _get_schema_response(self, request):
        with self._generating:
            return super()._get_schema_response(request)

    def finalize_response(self, request, response, *args, **kwargs):
        if response.status_code >= 400:
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), "application/json"
        return super().finalize_response(request, response, *args, **kwargs)


urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz/", healthz, name="healthz"),
    path("api/schema/", SchemaView.as_view(), name="api-schema"),
    # Swagger UI from local static files (drf-spectacular-sidecar), its start-up script served
    # as a file of its own (`?script`): nothing inline, nothing from another origin.
    # (frontend/swagger_ui.html: drf-spectacular's page with its inline <style> in a static file).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema",
                                                          template_name="frontend/swagger_ui.html"), name="api-docs"),
    path("api/v1/", include("annotation.urls")),
    path("api/v1/", include("mlworkers.urls")),
    path("api/v1/", include("curation.urls")),
    re_path(r"^api/", api_not_found),
    path("", include("frontend.urls")),
]

# Local media goes only to members of a project holding the image (annotation/media.py). An absolute
# MEDIA_URL is another server's to answer; on S3 the API hands out signed URLs.
if settings.STORAGE_BACKEND == "local" and settings.MEDIA_URL.startswith("/"):
    urlpatterns.append(re_path(rf"^{re.escape(settings.MEDIA_URL.lstrip('/'))}(?P<key>.+)$", media_file, name="media"))
