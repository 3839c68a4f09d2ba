"""Filter runs through the API: researchers start them and read the report and verdicts as JSON."""
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.selectors import project_get_for_user
from core.api import JOB_FIELDS, JobSerializer, ListApi
from core.api_support import ERRORS
from core.jobs import job_cancel
from curation import services
from curation.models import DropReason, FilterRun, UnitVerdict
from curation.rules import FilterRulesSerializer
from curation.selectors import dropped_units, filter_run_get_for_user, run_verdicts_of_aspect


@extend_schema_field(FilterRulesSerializer)
class StoredRulesField(serializers.JSONField):
    """A run's rules as stored (complete with defaults), typed in the schema."""


class FilterRunSerializer(JobSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    rules = StoredRulesField(read_only=True, help_text="The rules and thresholds, complete with defaults.")

    class Meta:
        model = FilterRun
        fields = ["id", "project", "name", "version", "rules", "summary", *JOB_FIELDS]


class FilterRunInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    rules = FilterRulesSerializer(required=False, default=dict,
                                  help_text="Rules and thresholds; a rule left out takes its default.")


class UnitVerdictSerializer(serializers.ModelSerializer):
    class Meta:
        model = UnitVerdict
        fields = ["comparison", "keep", "consensus", "confidence", "reasons", "drop_reason"]


class FilterRunListCreateApi(ListApi):
    serializer_class = FilterRunSerializer

    def rows(self):
        project = project_get_for_user(user=self.request.user, slug=self.kwargs["slug"], manage=True)
        return FilterRun.objects.filter(project=project).select_related("project")

    @extend_schema(operation_id="filter_runs_list", responses={200: FilterRunSerializer(many=True), **ERRORS})
    def get(self, request, slug):
        return self.list_response()

    @extend_schema(operation_id="filter_runs_create", request=FilterRunInputSerializer,
                   responses={202: FilterRunSerializer, **ERRORS})
    def post(self, request, slug):
        project = project_get_for_user(user=request.user, slug=slug, manage=True)
        data = FilterRunInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run = services.filter_run_create(project=project, created_by=request.user, **data.validated_data)
        return Response(FilterRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class FilterRunDetailApi(APIView):
    @extend_schema(operation_id="filter_runs_retrieve", responses={200: FilterRunSerializer, **ERRORS})
    def get(self, request, run_id):
        return Response(FilterRunSerializer(filter_run_get_for_user(user=request.user, run_id=run_id)).data)


class FilterRunCancelApi(APIView):
    @extend_schema(operation_id="filter_runs_cancel", request=None, responses={200: FilterRunSerializer, **ERRORS})
    def post(self, request, run_id):
        run = filter_run_get_for_user(user=request.user, run_id=run_id)
        return Response(FilterRunSerializer(job_cancel(job=run, actor=request.user)).data)


@extend_schema_view(get=extend_schema(
    operation_id="filter_runs_verdicts_list", responses={200: UnitVerdictSerializer(many=True), **ERRORS},
    parameters=[OpenApiParameter("keep", bool, description="Only kept (true) or dropped (false) units."),
                OpenApiParameter("reason", str, enum=DropReason.values,
                                 description="Only dropped units whose first reason is of this kind."),
                OpenApiParameter("aspect", str, description="Only units of this aspect (overall or one of the "
                                 "project's aspect keys); a run decides the units of its rules' aspect.")]))
class FilterRunVerdictListApi(ListApi):
    serializer_class = UnitVerdictSerializer

    def rows(self):
        run = filter_run_get_for_user(user=self.request.user, run_id=self.kwargs["run_id"])
        reason = self.request.query_params.get("reason")
        aspect = self.request.query_params.get("aspect", "")
        if reason is not None:
            return dropped_units(run=run, reason=reason, aspect=aspect)
        verdicts = UnitVerdict.objects.filter(run=run).order_by("id")
        keep = self.request.query_params.get("keep")
        if keep in ("true", "false"):
            verdicts = verdicts.filter(keep=keep == "true")
        return run_verdicts_of_aspect(run=run, verdicts=verdicts, aspect=aspect)

    def get(self, request, run_id):
        return self.list_response()
