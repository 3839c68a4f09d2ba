"""API for machine annotators (platform admins) and auto-annotation jobs (project admins)."""
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import MachineAnnotator
from annotation.selectors import project_get_for_user
from core.api import JOB_FIELDS, JobSerializer, ListApi
from core.api_support import ARCHIVED, ERRORS
from mlworkers import catalogue as known_judges
from mlworkers import selectors, services
from mlworkers.backends.base import backend_names
from mlworkers.models import MAX_SAMPLES, AutoAnnotationFailure, AutoAnnotationJob


class MachineAnnotatorSerializer(serializers.ModelSerializer):
    class Meta:
        model = MachineAnnotator
        fields = ["id", "name", "backend", "model_ref", "parameters", "prompt_template", "model_commits", "version",
                  "is_active", "created_at"]
        read_only_fields = ["id", "model_commits", "version", "created_at"]


MODEL_REF_HELP = ("The weights: a local path (present here and on the gpu workers), an s3:// key, or a Hub reference "
                  "hf://org/repo[@revision][/path/in/repo] (open_clip backends also take hf-hub:org/repo, "
                  "transformers ones a plain org/repo); for openai_chat, the model's name on the server.")


class MachineAnnotatorInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    backend = serializers.ChoiceField(choices=backend_names(), help_text="One of the registered backends.")
    model_ref = serializers.CharField(max_length=1000, help_text=MODEL_REF_HELP)
    parameters = serializers.JSONField(required=False, default=dict)
    prompt_template = serializers.CharField(required=False, allow_blank=True, default="")


class MachineAnnotatorUpdateSerializer(MachineAnnotatorInputSerializer):
    name = serializers.CharField(max_length=100, required=False)
    backend = serializers.ChoiceField(choices=backend_names(), required=False)
    model_ref = serializers.CharField(max_length=1000, required=False, help_text=MODEL_REF_HELP)
    parameters = serializers.JSONField(required=False)
    prompt_template = serializers.CharField(required=False, allow_blank=True)
    is_active = serializers.BooleanField(required=False)
    refresh_revisions = serializers.BooleanField(
        required=False, default=False,
        help_text="Resolve the Hub references anew (follow a branch that moved): a new version if a commit changed.")


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


class CatalogueHubFileSerializer(serializers.Serializer):
    repo_id = serializers.CharField()
    file = serializers.CharField(help_text="The file in the repo; \"\" for the files the backend picks from it.")
    revision = serializers.CharField(allow_null=True, help_text="A pinned commit sha; null: resolved at first save.")
    checksum = serializers.CharField(allow_null=True, help_text="The file's published sha256; null where none is.")
    reference = serializers.CharField(help_text="As model_ref or a parameter takes it.")


class CatalogueEntrySerializer(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()
    backend = serializers.CharField()
    model_ref = serializers.CharField()
    model = CatalogueHubFileSerializer(allow_null=True, help_text="null for a judge served elsewhere.")
    files = serializers.DictField(child=CatalogueHubFileSerializer(), help_text="Parameter -> further weights.")
    parameters = serializers.JSONField()
    licence = serializers.CharField()
    input_size = serializers.CharField()
    formula = serializers.CharField()
    notes = serializers.CharField()


class PromptPresetSerializer(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()
    aspects = serializers.ListField(child=serializers.CharField())
    template = serializers.CharField()


class CatalogueApi(APIView):
    """Known text-to-image judges, and creating an annotator from one of them."""

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "MachineAnnotatorCatalogue"

        entries = CatalogueEntrySerializer(many=True)
        presets = PromptPresetSerializer(many=True)

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "MachineAnnotatorFromCatalogue"

        catalogue = serializers.ChoiceField(choices=list(known_judges.ENTRIES), help_text="The entry's key.")
        name = serializers.CharField(max_length=100, required=False, default="",
                                     help_text="Default: the entry's label.")
        model_ref = serializers.CharField(max_length=1000, required=False, default="",
                                          help_text="Replaces the entry's (another copy of the same weights; "
                                                    "for openai_chat, the model's name on your server).")
        parameters = serializers.JSONField(required=False, default=dict, help_text="Go over the entry's.")
        preset = serializers.ChoiceField(choices=list(known_judges.PRESETS), required=False, allow_blank=True,
                                         default="", help_text="A prompt template preset (MLLM judges).")
        prompt_template = serializers.CharField(required=False, allow_blank=True, default="",
                                                help_text="Replaces the preset's or entry's.")
        is_active = serializers.BooleanField(required=False, default=True)

    @extend_schema(operation_id="machine_annotators_catalogue", responses={200: OutputSerializer, **ERRORS})
    def get(self, request):
        selectors.require_platform_admin(request.user)
        presets = [{"key": p.key, "label": p.label, "aspects": list(p.aspects), "template": p.template}
                   for p in known_judges.PRESETS.values()]
        return Response({"entries": known_judges.catalogue_rows(), "presets": presets})

    @extend_schema(operation_id="machine_annotators_create_from_catalogue", request=InputSerializer,
                   responses={201: MachineAnnotatorSerializer, **ERRORS})
    def post(self, request):
        selectors.require_platform_admin(request.user)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        annotator = known_judges.machine_annotator_create_from_catalogue(
            key=values.pop("catalogue"), created_by=request.user, **values)
        return Response(MachineAnnotatorSerializer(annotator).data, status=status.HTTP_201_CREATED)


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
        fields = ["id", "project", "machine_annotator", "machine_annotator_name", "machine_version", "model_commits",
                  "kind", "scope", "sample_size", "aspects", "orders", "samples", "progress", *JOB_FIELDS]

    def get_progress(self, job) -> ProgressSerializer:
        return selectors.auto_job_progress(job=job)


class AutoJobInputSerializer(serializers.Serializer):
    machine_annotator = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=AutoAnnotationJob.Kind.choices)
    scope = serializers.ChoiceField(choices=AutoAnnotationJob.Scope.choices, default=AutoAnnotationJob.Scope.ALL)
    sample_size = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1, allow_null=True)
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
                   responses={202: AutoJobSerializer, **ERRORS, **ARCHIVED})
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
        return Response(AutoJobSerializer(services.auto_job_cancel(job=job, actor=request.user)).data)


class AutoJobResumeApi(APIView):
    @extend_schema(operation_id="auto_jobs_resume", request=None,
                   responses={202: AutoJobSerializer, **ERRORS, **ARCHIVED})
    def post(self, request, job_id):
        job = selectors.auto_job_get_for_user(user=request.user, job_id=job_id)
        resumed = services.auto_job_resume(job=job, actor=request.user)
        return Response(AutoJobSerializer(resumed).data, status=status.HTTP_202_ACCEPTED)


class AutoJobFailureSerializer(serializers.ModelSerializer):
    """One item the judge could not fully answer: an image, or a pair shown `first_image` first
    for one `sample` (`first_image` null: every order and sample of the pair, a chunk that failed)."""

    aspects = serializers.ListField(child=serializers.CharField(), help_text="The aspects it got no answer for.")

    class Meta:
        model = AutoAnnotationFailure
        fields = ["id", "image", "comparison", "first_image", "sample", "aspects", "error", "raw", "created_at"]


class AutoJobFailureListApi(ListApi):
    serializer_class = AutoJobFailureSerializer

    def rows(self):
        job = selectors.auto_job_get_for_user(user=self.request.user, job_id=self.kwargs["job_id"])
        return AutoAnnotationFailure.objects.filter(job=job).order_by("id")

    @extend_schema(operation_id="auto_jobs_failures_list", responses={200: AutoJobFailureSerializer(many=True), **ERRORS})
    def get(self, request, job_id):
        return self.list_response()
