"""The annotator workspace's API (docs/workspace-api.md): lease, submit, undo, progress, profile."""
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import selectors
from annotation.assignment import assignments_lease_next, require_active
from annotation.judging import submission_undo_last, submissions_store
from annotation.models import AnnotatorProfile, TaskType
from annotation.studies import study_work_finished
from core.api_support import ARCHIVED, ERRORS, ErrorSerializer


class ImageRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    preview_url = serializers.CharField()
    url = serializers.CharField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()


class PromptRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    text = serializers.CharField()


class LeasedUnitSerializer(serializers.Serializer):
    assignment = serializers.IntegerField()
    unit = serializers.IntegerField()
    task_type = serializers.ChoiceField(choices=TaskType.choices)
    expires_at = serializers.DateTimeField()
    prompt = PromptRefSerializer()
    images = ImageRefSerializer(many=True, help_text="Pairwise: [left, right] as shown; else one image.")


class UnitsSerializer(serializers.Serializer):
    units = LeasedUnitSerializer(many=True)
    no_more_work = serializers.BooleanField()


class CompletionSerializer(serializers.Serializer):
    code = serializers.CharField(allow_blank=True, help_text="The completion code to give the platform.")
    url = serializers.CharField(allow_null=True, help_text="Where to send the participant, when the study set one.")
    quota = serializers.IntegerField()
    judged = serializers.IntegerField()


class WorkNextSerializer(UnitsSerializer):
    state = serializers.ChoiceField(
        choices=["work", "quota_done", "no_work_left"],
        help_text="work: units are listed; quota_done: a study participant reached their quota; no_work_left: "
                  "nothing is left for this person now.")
    completion = CompletionSerializer(allow_null=True, help_text="For study participants once their work ends.")


def _membership_for_work(request, slug, task_type=None):
    membership = selectors.membership_for_work(user=request.user, slug=slug)
    project = membership.project
    if task_type is not None and task_type not in project.task_types:
        raise ValidationError({"task_type": f"{task_type!r} is not switched on in this project "
                                            f"(on: {', '.join(project.task_types)})"})
    if task_type == TaskType.PERSONAL_RATING:
        profile = AnnotatorProfile.objects.filter(user=request.user).first()
        if profile is None or profile.consent_at is None:
            raise PermissionDenied("Personal ratings need your consent first (see your profile).",
                                   code="consent_required")
    require_active(membership)
    return membership


class WorkNextApi(APIView):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "WorkNextInput"

        task_type = serializers.ChoiceField(choices=TaskType.choices)
        count = serializers.IntegerField(min_value=1, max_value=10, default=3)

    @extend_schema(operation_id="work_next", request=InputSerializer,
                   responses={200: WorkNextSerializer, **ERRORS, **ARCHIVED})
    def post(self, request, slug):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        task_type = data.validated_data["task_type"]
        membership = _membership_for_work(request, slug, task_type)
        leased = assignments_lease_next(membership=membership, task_type=task_type, count=data.validated_data["count"])
        units = selectors.assignment_payloads(assignments=leased)
        # The payload is built in the shape WorkNextSerializer documents; serializing it again
        # would cost the hot path about a millisecond.
        answer = {"units": units, "no_more_work": not units, "state": "work" if units else "no_work_left",
                  "completion": None}
        if not units:
            answer.update(study_work_finished(project=membership.project, annotator=request.user, task_type=task_type))
        return Response(answer)


class SubmitItemSerializer(serializers.Serializer):
    """Documents the item; the service checks each item itself so one bad item rejects alone."""

    idempotency_key = serializers.CharField(min_length=8, max_length=64)
    assignment = serializers.IntegerField()
    latency_ms = serializers.IntegerField(required=False, min_value=0)
    choice = serializers.ChoiceField(choices=["left", "right", "tie"], required=False)
    aspects = serializers.DictField(child=serializers.ChoiceField(choices=["left", "right", "tie"]), required=False)
    scores = serializers.DictField(child=serializers.IntegerField(), required=False)
    rationale = serializers.CharField(required=False, allow_blank=True, max_length=1000)
    rating = serializers.IntegerField(required=False)
    has_artifacts = serializers.BooleanField(required=False)
    reasons = serializers.ListField(child=serializers.CharField(), required=False)
    skip = serializers.BooleanField(required=False)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=300)


class SubmitResultSerializer(serializers.Serializer):
    idempotency_key = serializers.CharField()
    status = serializers.ChoiceField(choices=["stored", "duplicate", "conflict", "rejected"])
    message = serializers.CharField(allow_blank=True)


class WorkSubmitApi(APIView):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "WorkSubmitInput"

        submissions = serializers.ListField(child=serializers.DictField(), min_length=1, max_length=50)

    class OutputSerializer(serializers.Serializer):
        results = SubmitResultSerializer(many=True)

        class Meta:
            ref_name = "WorkSubmitResults"

    class RequestSchema(serializers.Serializer):
        submissions = SubmitItemSerializer(many=True)

    @extend_schema(operation_id="work_submit", request=RequestSchema,
                   responses={200: OutputSerializer, **ERRORS, 409: OpenApiResponse(ErrorSerializer)})
    def post(self, request, slug):
        """A batch of one answers 400 when refused, 409 when its key was used for a different item."""
        membership = _membership_for_work(request, slug)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        outcomes = submissions_store(membership=membership, items=data.validated_data["submissions"])
        results = [{"idempotency_key": o.idempotency_key, "status": o.status, "message": o.message} for o in outcomes]
        if len(outcomes) == 1 and outcomes[0].status == "rejected":
            return Response({"message": f"Submission rejected: {outcomes[0].message}", "extra": {"results": results}},
                            status=status.HTTP_400_BAD_REQUEST)
        if len(outcomes) == 1 and outcomes[0].status == "conflict":
            return Response({"message": f"Submission conflict: {outcomes[0].message}",
                             "extra": {"code": "conflict", "results": results}}, status=status.HTTP_409_CONFLICT)
        return Response({"results": results})


class WorkUndoApi(APIView):
    @extend_schema(operation_id="work_undo", request=None, responses={200: UnitsSerializer, **ERRORS, **ARCHIVED})
    def post(self, request, slug):
        assignment = submission_undo_last(membership=_membership_for_work(request, slug))
        if assignment is None:
            raise NotFound("Nothing to undo.")
        units = selectors.assignment_payloads(assignments=[assignment])
        return Response(UnitsSerializer({"units": units, "no_more_work": False}).data)


class WorkProgressApi(APIView):
    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "WorkProgress"

        done_today = serializers.IntegerField()
        done_total = serializers.IntegerField()
        left_in_project = serializers.IntegerField()

    @extend_schema(operation_id="work_progress",
                   parameters=[OpenApiParameter("task_type", str, enum=TaskType.values, required=True)],
                   responses={200: OutputSerializer, **ERRORS})
    def get(self, request, slug):
        task_type = request.query_params.get("task_type", "")
        if task_type not in TaskType.values:
            raise ValidationError({"task_type": f"one of {', '.join(TaskType.values)}"})
        project = selectors.project_get_for_user(user=request.user, slug=slug)
        return Response(selectors.work_progress(project=project, annotator=request.user, task_type=task_type))


class ProfileSerializer(serializers.ModelSerializer):
    consent = serializers.BooleanField(write_only=True, required=False)

    class Meta:
        model = AnnotatorProfile
        fields = ["pseudonym", "consent", "consent_at", "age_band", "gender", "nationality", "art_experience",
                  "photography_experience"]
        read_only_fields = ["pseudonym", "consent_at"]
        extra_kwargs = {"pseudonym": {"help_text": "The stable id exported datasets name you by (never your "
                                                   "username or email)."}}


class MyProfileApi(APIView):
    @extend_schema(operation_id="me_profile_retrieve", responses={200: ProfileSerializer, **ERRORS})
    def get(self, request):
        from annotation.services import annotator_profile_ensure

        return Response(ProfileSerializer(annotator_profile_ensure(user=request.user)).data)

    @extend_schema(operation_id="me_profile_update", request=ProfileSerializer,
                   responses={200: ProfileSerializer, **ERRORS})
    def put(self, request):
        from annotation.services import profile_update

        data = ProfileSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        profile = profile_update(user=request.user, **data.validated_data)
        return Response(ProfileSerializer(profile).data)


class GoldUnitSerializer(serializers.Serializer):
    task_type = serializers.ChoiceField(choices=[TaskType.PAIRWISE, TaskType.ASPECT_SCORE, TaskType.ARTIFACT_FLAG])
    comparison = serializers.IntegerField(required=False, help_text="Pairwise units.")
    image = serializers.IntegerField(required=False, help_text="Aspect-score and artifact-flag units.")
    answer = serializers.JSONField(help_text='{"choice": "a"|"b"|"tie"}, {"scores": {...}} or {"has_artifacts": bool}')


class GoldUnitsApi(APIView):
    """Researchers mark units as gold (attention checks) with their expected answers."""

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "GoldUnitsInput"

        units = GoldUnitSerializer(many=True, allow_empty=False)

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "GoldUnitsMarked"

        marked = serializers.IntegerField()

    @extend_schema(operation_id="gold_units_mark", request=InputSerializer,
                   responses={200: OutputSerializer, **ERRORS, **ARCHIVED})
    def post(self, request, slug):
        from annotation.assignment import gold_units_mark

        project = selectors.project_get_for_user(user=request.user, slug=slug, manage=True)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        marked = gold_units_mark(project=project, items=data.validated_data["units"])
        return Response({"marked": len(marked)})
