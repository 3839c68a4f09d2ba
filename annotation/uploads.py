"""Receiving an uploaded manifest: streamed to a temporary file as it arrives (never held in
memory, whatever its size) and refused once it passes IMPORT_MANIFEST_MAX_BYTES."""
from django.conf import settings
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from rest_framework.exceptions import APIException
from rest_framework.parsers import MultiPartParser

# Room in a request body for the form fields that come beside the manifest (images_root,
# max_pairs_per_prompt) and the multipart boundaries.
FORM_ROOM_BYTES = 64 * 1024


class ManifestTooLarge(APIException):
    """Answered 413 in the API's error shape."""

    status_code = 413
    default_code = "manifest_too_large"

    def __init__(self):
        limit = settings.IMPORT_MANIFEST_MAX_BYTES
        super().__init__(f"The manifest is over the {limit}-byte limit (IMPORT_MANIFEST_MAX_BYTES); "
                         f"split it into several imports.")


class ManifestUploadHandler(TemporaryFileUploadHandler):
    """Writes every uploaded file to a temporary file chunk by chunk, counting the bytes: past
    IMPORT_MANIFEST_MAX_BYTES the file is deleted and ManifestTooLarge raised. A body whose
    declared length is already over the limit is refused before any of it is read."""

    def __init__(self, request=None):
        super().__init__(request)
        self.limit = settings.IMPORT_MANIFEST_MAX_BYTES
        self.received = 0

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if content_length > self.limit + FORM_ROOM_BYTES:
            raise ManifestTooLarge()

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.limit:
            self.upload_interrupted()  # closes and deletes the temporary file
            raise ManifestTooLarge()
        return super().receive_data_chunk(raw_data, start)


class ManifestMultiPartParser(MultiPartParser):
    """Multipart parsing whose files go through ManifestUploadHandler alone (Django's default
    handlers would keep a small file in memory and set no limit)."""

    def parse(self, stream, media_type=None, parser_context=None):
        http_request = parser_context["request"]._request
        http_request.upload_handlers = [ManifestUploadHandler(http_request)]
        return super().parse(stream, media_type, parser_context)
