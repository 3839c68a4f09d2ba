"""REST API v1: thin views over selectors (reads) and services (writes)."""
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.exceptions import NotFound, PermissionDenied, Throttled, ValidationError
from rest_framework.parsers import FormParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import selectors, services
from annotation.auth import (
    api_token_expires_at,
    api_token_obtain,
    api_token_revoke,
    sign_in_locked_out_message,
    sign_in_retry_after_seconds,
)
from annotation.uploads import ManifestMultiPartParser
from annotation.models import (
    ArtifactFlag,
    AspectScore,
    Comparison,
    Image,
    ImportJob,
    ImportLineError,
    Membership,
    PersonalRating,
    PreferenceJudgment,
    Project,
    Prompt,
    TaskType,
)
from core.api import JOB_FIELDS, JobSerializer, ListApi
from core.api_support import ARCHIVED, ERRORS, ErrorSerializer
from core.models import AuditEntry
from core.jobs import job_cancel


# --- authentication -----------------------------------------------------------------------

class TokenApi(APIView):
    """POST trades a username and password for the user's API token; DELETE revokes it."""

    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()
        expires_at = serializers.DateTimeField(allow_null=True, help_text="Null where tokens never expire.")

    def _obtaining(self) -> bool:
        # The schema generator asks before it has set a request.
        return getattr(getattr(self, "request", None), "method", None) == "POST"

    def get_authenticators(self):
        # Trading a password needs no other credentials: a stale token, or a session without its
        # CSRF token, must not stand in the way.
        return [] if self._obtaining() else super().get_authenticators()

    def get_permissions(self):
        return [AllowAny()] if self._obtaining() else super().get_permissions()

    @extend_schema(operation_id="auth_token_obtain", request=AuthTokenSerializer,
                   responses={200: OutputSerializer, 400: ErrorSerializer,
                              429: OpenApiResponse(ErrorSerializer, description="Too many failed attempts for "
                                                   "this account from this address; see Retry-After.")})
    def post(self, request):
        serializer = AuthTokenSerializer(data=request.data, context={"request": request})
        valid = serializer.is_valid()
        if getattr(request, "axes_locked_out", False):  # set by django-axes while authenticating
            raise Throttled(wait=sign_in_retry_after_seconds(), detail=sign_in_locked_out_message(),
                            code="locked_out")
        if not valid:
            raise ValidationError(serializer.errors)
        token = api_token_obtain(user=serializer.validated_data["user"])
        return Response({"token": token.key, "expires_at": api_token_expires_at(token)})

    @extend_schema(operation_id="auth_token_revoke", request=None, responses={204: None, **ERRORS})
    def delete(self, request):
        """Revokes the caller's token (the one used for this call, when it was a token call)."""
        api_token_revoke(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- projects -----------------------------------------------------------------------------

class AspectSerializer(serializers.Serializer):
    key = serializers.CharField(max_length=64)
    label = serializers.CharField(max_length=100, required=False, allow_blank=True)
    question = serializers.CharField(max_length=500, required=False, allow_blank=True)


class ProjectOutputSerializer(serializers.ModelSerializer):
    aspects = AspectSerializer(many=True)
    task_types = serializers.ListField(child=serializers.ChoiceField(choices=TaskType.choices))
    role = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = ["slug", "name", "instructions", "task_types", "aspects", "score_scale", "rating_scale", "overlap",
                  "gold_rate", "lease_minutes", "collection", "min_votes", "max_votes", "confidence_target",
                  "judgment_budget", "is_archived", "created_at", "role"]

    def get_role(self, project) -> str | None:
        return selectors.project_role(user=self.context["request"].user, project=project)


class ProjectInputSerializer(serializers.Serializer):
    slug = serializers.SlugField(max_length=64)
    name = serializers.CharField(max_length=200)
    instructions = serializers.CharField(required=False, allow_blank=True, max_length=20000)
    task_types = serializers.ListField(child=serializers.ChoiceField(choices=TaskType.choices), required=False,
                                       allow_empty=False)
    aspects = AspectSerializer(many=True, required=False, allow_empty=False)
    score_scale = serializers.IntegerField(min_value=2, max_value=100, required=False)
    rating_scale = serializers.IntegerField(min_value=2, max_value=100, required=False)
    overlap = serializers.IntegerField(min_value=1, max_value=100, required=False)
    gold_rate = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    lease_minutes = serializers.IntegerField(min_value=1, max_value=24 * 60, required=False, allow_null=True,
                                             help_text="How long a leased unit stays reserved; null: the "
                                                       "platform's WORK_LEASE_MINUTES.")
    collection = serializers.ChoiceField(choices=Project.Collection.choices, required=False,
                                         help_text="fixed: `overlap` votes per unit; adaptive: pairwise units get "
                                                   "min_votes to max_votes, stopping at confidence_target.")
    min_votes = serializers.IntegerField(min_value=1, max_value=100, required=False)
    max_votes = serializers.IntegerField(min_value=1, max_value=100, required=False)
    confidence_target = serializers.FloatField(min_value=0.5, max_value=1.0, required=False,
                                               help_text="Strictly between 0.5 and 1.")
    judgment_budget = serializers.IntegerField(min_value=1, max_value=2**31 - 1, required=False, allow_null=True,
                                               help_text="Human pairwise votes in all; null: no budget. At least "
                                                         "min_votes x the pairwise units.")

    def validate_confidence_target(self, value):
        if not 0.5 < value < 1:
            raise serializers.ValidationError(f"confidence_target must lie strictly between 0.5 and 1, got {value!r}")
        return value


class ProjectUpdateSerializer(ProjectInputSerializer):
    slug = None
    name = serializers.CharField(max_length=200, required=False)
    is_archived = serializers.BooleanField(required=False)


class ProjectListCreateApi(ListApi):
    serializer_class = ProjectOutputSerializer

    def rows(self):
        return selectors.project_list_for_user(user=self.request.user)

    @extend_schema(operation_id="projects_list", responses={200: ProjectOutputSerializer(many=True), **ERRORS})
    def get(self, request):
        return self.list_response()

    @extend_schema(operation_id="projects_create", request=ProjectInputSerializer,
                   responses={201: ProjectOutputSerializer, **ERRORS})
    def post(self, request):
        if not selectors.user_can_create_projects(request.user):
            raise PermissionDenied("Creating projects needs the researcher permission.")
        data = ProjectInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = services.project_create(creator=request.user, **data.validated_data)
        return Response(ProjectOutputSerializer(project, context={"request": request}).data,
                        status=status.HTTP_201_CREATED)


class ProjectDetailApi(APIView):
    @extend_schema(operation_id="projects_retrieve", responses={200: ProjectOutputSerializer, **ERRORS})
    def get(self, request, slug):
        project = selectors.project_get_for_user(user=request.user, slug=slug)
        return Response(ProjectOutputSerializer(project, context={"request": request}).data)

    @extend_schema(operation_id="projects_update", request=ProjectUpdateSerializer,
                   responses={200: ProjectOutputSerializer, **ERRORS})
    def patch(self, request, slug):
        project = selectors.project_get_for_user(user=request.user, slug=slug, manage=True)
        data = ProjectUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        project = services.project_update(project=project, actor=request.user, **data.validated_data)
        return Response(ProjectOutputSerializer(project, context={"request": request}).data)


# --- members ------------------------------------------------------------------------------

class MembershipOutputSerializer(serializers.ModelSerializer):
    """A member as their project's researchers and admins see them (no one else is shown this)."""

    username = serializers.CharField(source="user.username")
    pseudonym = serializers.UUIDField(source="user.annotator_profile.pseudonym", read_only=True,
                                      help_text="The stable id exported datasets name this person by "
                                                "(`user_id`); never their username or email.")

    class Meta:
        model = Membership
        fields = ["username", "pseudonym", "role", "status", "status_reason", "created_at"]


class MembershipInputSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Membership.Role.choices, default=Membership.Role.ANNOTATOR)


class MembershipRoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Membership.Role.choices)


def _user_by_name(username: str):
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise NotFound(f"No active user named {username!r}.")
    return user


class MemberListCreateApi(ListApi):
    serializer_class = MembershipOutputSerializer

    def rows(self):
        project = selectors.project_get_for_user(user=self.request.user, slug=self.kwargs["slug"], manage=True)
        services.member_profiles_ensure(project=project)
        return selectors.membership_list(project=project)

    @extend_schema(operation_id="members_list", responses={200: MembershipOutputSerializer(many=True), **ERRORS})
    def get(self, request, slug):
        return self.list_response()

    @extend_schema(operation_id="members_add", request=MembershipInputSerializer,
                   responses={201: MembershipOutputSerializer, **ERRORS})
    def post(self, request, slug):
        project = selectors.project_get_for_user(user=request.user, slug=slug, manage=True)
        data = MembershipInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.membership_set(project=project, user=_user_by_name(data.validated_data["username"]),
                                             role=data.validated_data["role"], actor=request.user)
        return Response(MembershipOutputSerializer(membership).data, status=status.HTTP_201_CREATED)


class MemberDetailApi(APIView):
    @extend_schema(operation_id="members_update", request=MembershipRoleSerializer,
                   responses={200: MembershipOutputSerializer, **ERRORS})
    def patch(self, request, slug, username):
        project = selectors.project_get_for_user(user=request.user, slug=slug, manage=True)
        data = MembershipRoleSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = _member(project, username)
        membership = services.membership_set(project=project, user=user, role=data.validated_data["role"],
                                             actor=request.user)
        return Response(MembershipOutputSerializer(membership).data)

    @extend_schema(operation_id="members_remove", responses={204: None, **ERRORS})
    def delete(self, request, slug, username):
        project = selectors.project_get_for_user(user=request.user, slug=slug, manage=True)
        services.membership_remove(project=project, user=_user_by_name(username), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- prompts, images, comparisons ----------------------------------------------------------

class PromptOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Prompt
        fields = ["id", "text", "category", "external_id", "meta", "created_at"]


class ImageOutputSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    preview_url = serializers.SerializerMethodField()

    class Meta:
        model = Image
        fields = ["id", "prompt", "sha256", "format", "width", "height", "size_bytes", "generator", "seed", "meta",
                  "url", "preview_url", "created_at"]

    def get_url(self, image) -> str:
        return default_storage.url(image.storage_key)

    def get_preview_url(self, image) -> str:
        return default_storage.url(image.preview_key)


class ComparisonOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Comparison
        fields = ["id", "prompt", "image_a", "image_b", "created_at"]


class PromptFilter(filters.FilterSet):
    search = filters.CharFilter(field_name="text", lookup_expr="icontains", help_text="Text contains (any case).")

    class Meta:
        model = Prompt
        fields = ["category", "external_id"]


class ImageFilter(filters.FilterSet):
    class Meta:
        model = Image
        fields = ["prompt", "generator", "sha256"]


class ComparisonFilter(filters.FilterSet):
    class Meta:
        model = Comparison
        fields = ["prompt"]


class ProjectScopedListApi(ListApi):
    """A paginated list of one project's rows, visible to every member of it."""

    selector = None

    def rows(self):
        project = selectors.project_get_for_user(user=self.request.user, slug=self.kwargs["slug"])
        return type(self).selector(project=project)


def _list_schema(operation_id, serializer):
    return extend_schema_view(get=extend_schema(operation_id=operation_id,
                                                responses={200: serializer(many=True), **ERRORS}))


@_list_schema("prompts_list", PromptOutputSerializer)
class PromptListApi(ProjectScopedListApi):
    serializer_class = PromptOutputSerializer
    filterset_class = PromptFilter
    selector = staticmethod(selectors.prompt_list)

    def get(self, request, slug):
        return self.list_response()


@_list_schema("images_list", ImageOutputSerializer)
class ImageListApi(ProjectScopedListApi):
    serializer_class = ImageOutputSerializer
    filterset_class = ImageFilter
    selector = staticmethod(selectors.image_list)

    def get(self, request, slug):
        return self.list_response()


@_list_schema("comparisons_list", ComparisonOutputSerializer)
class ComparisonListApi(ProjectScopedListApi):
    serializer_class = ComparisonOutputSerializer
    filterset_class = ComparisonFilter
    selector = staticmethod(selectors.comparison_list)

    def get(self, request, slug):
        return self.list_response()


# --- imports ------------------------------------------------------------------------------

class ImportJobOutputSerializer(JobSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = ImportJob
        fields = ["id", "project", "images_root", "max_pairs_per_prompt", "lines_total", "lines_done",
                  "images_created", "duplicates", "rejected", "prompts_created", "comparisons_created", *JOB_FIELDS]


class ImportJobInputSerializer(serializers.Serializer):
    manifest = serializers.FileField(help_text="JSONL: one {prompt, image, generator?, seed?, category?, meta?} per line.")
    images_root = serializers.CharField(required=False, allow_blank=True, max_length=1000,
                                        help_text="Where relative paths point: a server folder under "
                                                  "IMPORT_LOCAL_ROOTS, or an S3 prefix s3://bucket/prefix/.")
    max_pairs_per_prompt = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1, allow_null=True)


class ImportLineErrorSerializer(serializers.ModelSerializer):
    class Meta:
        model = ImportLineError
        fields = ["line", "field", "message"]


class ImportJobListCreateApi(ListApi):
    serializer_class = ImportJobOutputSerializer
    parser_classes = [ManifestMultiPartParser, FormParser]

    def rows(self):
        project = selectors.project_get_for_user(user=self.request.user, slug=self.kwargs["slug"], manage=True)
        return ImportJob.objects.filter(project=project).select_related("project").order_by("-id")

    @extend_schema(operation_id="imports_list", responses={200: ImportJobOutputSerializer(many=True), **ERRORS})
    def get(self, request, slug):
        return self.list_response()

    @extend_schema(operation_id="imports_create", request={"multipart/form-data": ImportJobInputSerializer},
                   responses={202: ImportJobOutputSerializer, **ERRORS, **ARCHIVED,
                              413: OpenApiResponse(ErrorSerializer)})
    def post(self, request, slug):
        """The manifest arrives in a temporary file, at most IMPORT_MANIFEST_MAX_BYTES (413 past it)."""
        project = selectors.project_get_for_user(user=request.user, slug=slug, manage=True)
        data = ImportJobInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = services.import_job_create(
            project=project, creator=request.user, manifest=data.validated_data["manifest"],
            images_root=data.validated_data.get("images_root", ""),
            max_pairs_per_prompt=data.validated_data.get("max_pairs_per_prompt"),
        )
        return Response(ImportJobOutputSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class ImportJobDetailApi(APIView):
    @extend_schema(operation_id="imports_retrieve", responses={200: ImportJobOutputSerializer, **ERRORS})
    def get(self, request, job_id):
        return Response(ImportJobOutputSerializer(selectors.import_job_get_for_user(user=request.user, job_id=job_id)).data)


class ImportJobCancelApi(APIView):
    @extend_schema(operation_id="imports_cancel", request=None, responses={200: ImportJobOutputSerializer, **ERRORS})
    def post(self, request, job_id):
        job = selectors.import_job_get_for_user(user=request.user, job_id=job_id)
        return Response(ImportJobOutputSerializer(job_cancel(job=job, actor=request.user)).data)


@_list_schema("imports_errors_list", ImportLineErrorSerializer)
class ImportJobErrorListApi(ListApi):
    serializer_class = ImportLineErrorSerializer

    def rows(self):
        job = selectors.import_job_get_for_user(user=self.request.user, job_id=self.kwargs["job_id"])
        return ImportLineError.objects.filter(job=job).order_by("line", "id")

    def get(self, request, job_id):
        return self.list_response()


# --- judgments (read-only here; submission arrives with the workspace) ----------------------

_JUDGMENT_FIELDS = ["id", "source", "annotator", "machine_annotator", "machine_version", "rationale", "latency_ms",
                    "is_gold", "created_at"]


def _judgment_serializer(model, extra_fields):
    meta = type("Meta", (), {"model": model, "fields": _JUDGMENT_FIELDS + extra_fields})
    return type(f"{model.__name__}OutputSerializer", (serializers.ModelSerializer,), {"Meta": meta})


def _judgment_list_api(kind, model, extra_fields):
    serializer = _judgment_serializer(model, extra_fields)

    def rows(self):
        project = selectors.project_get_for_user(user=self.request.user, slug=self.kwargs["slug"])
        return selectors.judgment_list_for_user(user=self.request.user, project=project, kind=kind)

    def get(self, request, slug):
        return self.list_response()

    view = type(f"{model.__name__}ListApi", (ListApi,),
                {"serializer_class": serializer, "rows": rows, "get": get,
                 "__doc__": f"{model.__name__} rows of the project: annotators see only their own."})
    return _list_schema("judgments_" + kind.replace("-", "_") + "_list", serializer)(view)


PreferenceListApi = _judgment_list_api("preferences", PreferenceJudgment,
                                       ["comparison", "aspect", "choice", "left_image", "sample"])
AspectScoreListApi = _judgment_list_api("aspect-scores", AspectScore, ["image", "aspect", "value"])
PersonalRatingListApi = _judgment_list_api("personal-ratings", PersonalRating, ["image", "value"])
ArtifactFlagListApi = _judgment_list_api("artifact-flags", ArtifactFlag, ["image", "has_artifacts", "reasons"])


class MemberSuspendApi(APIView):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "MemberSuspendInput"

        reason = serializers.CharField(max_length=500)

    @extend_schema(operation_id="members_suspend", request=InputSerializer,
                   responses={200: MembershipOutputSerializer, **ERRORS})
    def post(self, request, slug, username):
        """Suspend a member: leases return to the pool; their judgments are set aside, not deleted."""
        project = selectors.project_get_for_user(user=request.user, slug=slug, manage=True)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = _member(project, username)
        membership = services.membership_suspend(project=project, user=user, reason=data.validated_data["reason"],
                                                 actor=request.user)
        return Response(MembershipOutputSerializer(membership).data)


class MemberReinstateApi(APIView):
    @extend_schema(operation_id="members_reinstate", request=None, responses={200: MembershipOutputSerializer, **ERRORS})
    def post(self, request, slug, username):
        project = selectors.project_get_for_user(user=request.user, slug=slug, manage=True)
        membership = services.membership_reinstate(project=project, user=_member(project, username), actor=request.user)
        return Response(MembershipOutputSerializer(membership).data)


def _member(project, username):
    user = _user_by_name(username)
    if not Membership.objects.filter(project=project, user=user).exists():
        raise NotFound(f"{username!r} is not a member of {project.slug!r}.")
    return user


# --- the audit log ------------------------------------------------------------------------

class AuditEntryOutputSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_username", help_text="Who acted; blank when the platform did.")

    class Meta:
        model = AuditEntry
        fields = ["id", "created_at", "action", "actor", "target", "details"]


@_list_schema("audit_list", AuditEntryOutputSerializer)
class AuditEntryListApi(ListApi):
    """The project's audit log, newest first (roles, suspensions, archiving and deletions, jobs
    started and cancelled): for its admins."""

    serializer_class = AuditEntryOutputSerializer

    def rows(self):
        return selectors.audit_entries_for_user(user=self.request.user, slug=self.kwargs["slug"])

    def get(self, request, slug):
        return self.list_response()
