"""API for machine annotators (platform admins) and auto-annotation jobs (project admins)."""
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.api import ListApi
from annotation.api_support import ERRORS
from annotation.models import MachineAnnotator
from annotation.selectors import project_get_for_user
from core.api import JOB_FIELDS, JobSerializer
from mlworkers import selectors, services
from mlworkers.backends.base import backend_names
from mlworkers.models import MAX_SAMPLES, AutoAnnotationFailure, AutoAnnotationJob


class MachineAnnotatorSerializer(serializers.ModelSerializer):
    class Meta:
        model = MachineAnnotator
        fields = ["id", "name", "backend", "model_ref", "parameters", "prompt_template", "version", "is_active",
                  "created_at"]
        read_only_fields = ["id", "version", "created_at"]


class MachineAnnotatorInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    backend = serializers.CharField(max_length=64, help_text="One of the registered backends.")
    model_ref = serializers.CharField(max_length=1000, help_text="Local path or s3:// key of the weights, or a model name.")
    parameters = serializers.JSONField(required=False, default=dict)
    prompt_template = serializers.CharField(required=False, allow_blank=True, default="")


class MachineAnnotatorUpdateSerializer(MachineAnnotatorInputSerializer):
    name = serializers.CharField(max_length=100, required=False)
    backend = serializers.CharField(max_length=64, required=False)
    model_ref = serializers.CharField(max_length=1000, required=False)
    parameters = serializers.JSONField(required=False)
    prompt_template = serializers.CharField(required=False, allow_blank=True)
    is_active = serializers.BooleanField(required=False)


class MachineAnnotatorListCreateApi(ListApi):
    serializer_class = MachineAnnotatorSerializer

    def rows(self):
        selectors.require_platform_admin(self.request.user)
        return MachineAnnotator.objects.order_by("name")

    @extend_schema(operation_id="machine_annotators_list", responses={200: MachineAnnotatorSerializer(many=True), **ERRORS})
    def get(self, request):
        return self.list_response()

    @extend_schema(operation_id="machine_annotators_create", request=MachineAnnotatorInputSerializer,
                   responses={201: MachineAnnotatorSerializer, **ERRORS})
    def post(self, request):
        selectors.require_platform_admin(request.user)
        data = MachineAnnotatorInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        annotator = services.machine_annotator_create(created_by=request.user, **data.validated_data)
        return Response(MachineAnnotatorSerializer(annotator).data, status=status.HTTP_201_CREATED)


class MachineAnnotatorDetailApi(APIView):
    @extend_schema(operation_id="machine_annotators_retrieve", responses={200: MachineAnnotatorSerializer, **ERRORS})
    def get(self, request, annotator_id):
        return Response(MachineAnnotatorSerializer(
            selectors.machine_annotator_get(user=request.user, annotator_id=annotator_id)).data)

    @extend_schema(operation_id="machine_annotators_update", request=MachineAnnotatorUpdateSerializer,
                   responses={200: MachineAnnotatorSerializer, **ERRORS})
    def patch(self, request, annotator_id):
        annotator = selectors.machine_annotator_get(user=request.user, annotator_id=annotator_id)
        data = MachineAnnotatorUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        annotator = services.machine_annotator_update(annotator=annotator, **data.validated_data)
        return Response(MachineAnnotatorSerializer(annotator).data)


class BackendListApi(APIView):
    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "Backends"

        backends = serializers.ListField(child=serializers.CharField())

    @extend_schema(operation_id="machine_backends_list", responses={200: OutputSerializer, **ERRORS})
    def get(self, request):
        selectors.require_platform_admin(request.user)
        return Response({"backends": backend_names()})


class ProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField()
    failed = serializers.IntegerField()
    total = serializers.IntegerField()
    rate_per_s = serializers.FloatField()
    seconds_left = serializers.IntegerField(allow_null=True)


class AutoJobSerializer(JobSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    machine_annotator_name = serializers.CharField(source="machine_annotator.name", read_only=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = AutoAnnotationJob
        fields = ["id", "project", "machine_annotator", "machine_annotator_name", "machine_version", "kind", "scope",
                  "sample_size", "aspects", "orders", "samples", "progress", *JOB_FIELDS]

    def get_progress(self, job) -> ProgressSerializer:
        return selectors.auto_job_progress(job=job)


class AutoJobInputSerializer(serializers.Serializer):
    machine_annotator = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=AutoAnnotationJob.Kind.choices)
    scope = serializers.ChoiceField(choices=AutoAnnotationJob.Scope.choices, default=AutoAnnotationJob.Scope.ALL)
    sample_size = serializers.IntegerField(required=False, min_value=1, allow_null=True)
    aspects = serializers.ListField(
        child=serializers.CharField(), required=False, allow_empty=False,
        help_text="Aspect keys of the project (default: all of them), or \"overall\": the project's pairwise "
                  "question, for pairs jobs, and for score jobs of a backend that scores one overall value "
                  "(pickscore, hpsv2).")
    orders = serializers.ChoiceField(choices=AutoAnnotationJob.Orders.choices, default=AutoAnnotationJob.Orders.BOTH)
    samples = serializers.IntegerField(
        default=1, min_value=1, max_value=MAX_SAMPLES,
        help_text="Pairs: answers asked per pair, order and aspect, for self-consistency; above 1 the judge must "
                  "sample (openai_chat: temperature above 0; mllm_transformers: do_sample true).")


class AutoJobListCreateApi(ListApi):
    serializer_class = AutoJobSerializer

    def rows(self):
        project = project_get_for_user(user=self.request.user, slug=self.kwargs["slug"])
        selectors.require_project_admin(user=self.request.user, project=project)
        return AutoAnnotationJob.objects.filter(project=project).select_related("project", "machine_annotator")

    @extend_schema(operation_id="auto_jobs_list", responses={200: AutoJobSerializer(many=True), **ERRORS})
    def get(self, request, slug):
        return self.list_response()

    @extend_schema(operation_id="auto_jobs_launch", request=AutoJobInputSerializer,
                   responses={202: AutoJobSerializer, **ERRORS})
    def post(self, request, slug):
        project = project_get_for_user(user=request.user, slug=slug)
        selectors.require_project_admin(user=request.user, project=project)
        data = AutoJobInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        annotator = MachineAnnotator.objects.filter(pk=values.pop("machine_annotator")).first()
        if annotator is None:
            raise serializers.ValidationError({"machine_annotator": "no such machine annotator"})
        job = services.auto_job_launch(project=project, annotator=annotator, created_by=request.user, **values)
        return Response(AutoJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class AutoJobDetailApi(APIView):
    @extend_schema(operation_id="auto_jobs_retrieve", responses={200: AutoJobSerializer, **ERRORS})
    def get(self, request, job_id):
        return Response(AutoJobSerializer(selectors.auto_job_get_for_user(user=request.user, job_id=job_id)).data)


class AutoJobCancelApi(APIView):
    @extend_schema(operation_id="auto_jobs_cancel", request=None, responses={200: AutoJobSerializer, **ERRORS})
    def post(self, request, job_id):
        job = selectors.auto_job_get_for_user(user=request.user, job_id=job_id)
        return Response(AutoJobSerializer(services.auto_job_cancel(job=job)).data)


class AutoJobResumeApi(APIView):
    @extend_schema(operation_id="auto_jobs_resume", request=None, responses={202: AutoJobSerializer, **ERRORS})
    def post(self, request, job_id):
        job = selectors.auto_job_get_for_user(user=request.user, job_id=job_id)
        return Response(AutoJobSerializer(services.auto_job_resume(job=job)).data, status=status.HTTP_202_ACCEPTED)


class AutoJobFailureSerializer(serializers.ModelSerializer):
    class Meta:
        model = AutoAnnotationFailure
        fields = ["id", "image", "comparison", "first_image", "sample", "aspect", "error", "raw", "created_at"]


class AutoJobFailureListApi(ListApi):
    serializer_class = AutoJobFailureSerializer

    def rows(self):
        job = selectors.auto_job_get_for_user(user=self.request.user, job_id=self.kwargs["job_id"])
        return AutoAnnotationFailure.objects.filter(job=job).order_by("id")

    @extend_schema(operation_id="auto_jobs_failures_list", responses={200: AutoJobFailureSerializer(many=True), **ERRORS})
    def get(self, request, job_id):
        return self.list_response()
