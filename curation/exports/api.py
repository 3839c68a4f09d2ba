"""Dataset exports through the API: researchers start, watch, cancel and download them."""
from __future__ import annotations

from django.http import FileResponse, HttpResponseRedirect, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.selectors import project_get_for_user
from core.api import JOB_FIELDS, JobSerializer, ListApi
from core.api_support import ERRORS
from curation.exports import selectors, services
from curation.exports.options import CONTAINERS, FORMATS, ExportOptionsSerializer
from curation.models import DatasetExport, FilterRun


@extend_schema_field(ExportOptionsSerializer)
class StoredOptionsField(serializers.JSONField):
    """An export's options as stored (complete with defaults), typed in the schema."""


class DatasetExportSerializer(JobSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    format = serializers.ChoiceField(choices=FORMATS, read_only=True)
    container = serializers.ChoiceField(choices=CONTAINERS, read_only=True)
    options = StoredOptionsField(read_only=True, help_text="Format options, complete with defaults.")
    files = serializers.SerializerMethodField(help_text="Each file of a finished export, with its download link.")

    class Meta:
        model = DatasetExport
        fields = ["id", "project", "format", "container", "destination", "filter_run", "options", "rows_total",
                  "rows_done", "files", *JOB_FIELDS]

    def get_files(self, export) -> list[dict]:
        return [{**entry, "url": f"/api/v1/exports/{export.pk}/files/{entry['path']}"}
                for entry in selectors.dataset_export_files(export=export)]


class DatasetExportInputSerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=FORMATS, help_text="The dataset's layout (see the README's formats).",
                                     error_messages={"invalid_choice": f"unknown format {{input!r}}; known: "
                                                                       f"{', '.join(FORMATS)}"})
    container = serializers.ChoiceField(choices=CONTAINERS, default="parquet", help_text="The files' kind.",
                                        error_messages={"invalid_choice": f"unknown container {{input!r}}; known: "
                                                                          f"{', '.join(CONTAINERS)}"})
    destination = serializers.CharField(required=False, allow_blank=True, default="",
                                        help_text="A new folder in the project's folder under EXPORT_ROOT "
                                                  "(relative paths start there), or an empty s3://bucket/prefix; "
                                                  "blank for a new folder there.")
    filter_run = serializers.IntegerField(required=False, allow_null=True, default=None)
    options = ExportOptionsSerializer(required=False, default=dict,
                                      help_text="Format options; an option left out takes its default.")


class DatasetExportListCreateApi(ListApi):
    serializer_class = DatasetExportSerializer

    def rows(self):
        project = project_get_for_user(user=self.request.user, slug=self.kwargs["slug"], manage=True)
        return DatasetExport.objects.filter(project=project).select_related("project")

    @extend_schema(operation_id="exports_list", responses={200: DatasetExportSerializer(many=True), **ERRORS})
    def get(self, request, slug):
        return self.list_response()

    @extend_schema(operation_id="exports_create", request=DatasetExportInputSerializer,
                   responses={202: DatasetExportSerializer, **ERRORS})
    def post(self, request, slug):
        project = project_get_for_user(user=request.user, slug=slug, manage=True)
        data = DatasetExportInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        run_id = fields.pop("filter_run")
        run = None
        if run_id is not None:
            run = FilterRun.objects.filter(pk=run_id, project=project).first()
            if run is None:
                raise serializers.ValidationError({"filter_run": f"no filter run {run_id} in this project"})
        export = services.dataset_export_create(project=project, filter_run=run, created_by=request.user, **fields)
        return Response(DatasetExportSerializer(export).data, status=status.HTTP_202_ACCEPTED)


class DatasetExportDetailApi(APIView):
    @extend_schema(operation_id="exports_retrieve", responses={200: DatasetExportSerializer, **ERRORS})
    def get(self, request, export_id):
        return Response(DatasetExportSerializer(selectors.dataset_export_get_for_user(
            user=request.user, export_id=export_id)).data)


class DatasetExportCancelApi(APIView):
    @extend_schema(operation_id="exports_cancel", request=None, responses={200: DatasetExportSerializer, **ERRORS})
    def post(self, request, export_id):
        export = selectors.dataset_export_get_for_user(user=request.user, export_id=export_id)
        cancelled = services.dataset_export_cancel(export=export, actor=request.user)
        return Response(DatasetExportSerializer(cancelled).data)


class DatasetExportFileApi(APIView):
    """One file of a finished export: streamed from a local folder, or a redirect to a signed S3 URL."""

    @extend_schema(operation_id="exports_file", responses={(200, "application/octet-stream"): OpenApiTypes.BINARY,
                                                           302: None, **ERRORS})
    def get(self, request, export_id, path):
        export = selectors.dataset_export_get_for_user(user=request.user, export_id=export_id)
        found = selectors.dataset_export_file_open(export=export, path=path)
        if found is None:
            raise NotFound(f"Export {export_id} has no file {path!r}.")
        if isinstance(found, str):
            return HttpResponseRedirect(found)
        # Bytes to save, whatever the file holds: the type the schema documents, not one guessed from the name.
        return FileResponse(found, as_attachment=True, filename=path.rsplit("/", 1)[-1],
                            content_type="application/octet-stream")


class DatasetExportArchiveApi(APIView):
    """The whole finished dataset as one uncompressed tar, streamed file by file."""

    @extend_schema(operation_id="exports_archive", responses={(200, "application/x-tar"): OpenApiTypes.BINARY,
                                                              **ERRORS})
    def get(self, request, export_id):
        export = selectors.dataset_export_get_for_user(user=request.user, export_id=export_id)
        if export.status != DatasetExport.Status.SUCCEEDED:
            raise NotFound(f"Export {export_id} is {export.status}: there is nothing to download yet.")
        response = StreamingHttpResponse(selectors.dataset_export_tar_stream(export=export),
                                         content_type="application/x-tar")
        name = f"{export.project.slug}-{export.format}-{export.pk}.tar"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
