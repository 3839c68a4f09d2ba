"""Crowd-platform studies through the API: a project's researchers and admins create, list and
deactivate study links, list each link's participants with their progress, and reject a
participant's work."""
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import selectors, studies
from annotation.models import StudyLink, StudyParticipant, TaskType
from core.api import ListApi
from core.api_support import ARCHIVED, ERRORS


class StudyLinkOutputSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(help_text="The link to post on the platform, with its placeholders.")
    participants = serializers.IntegerField(source="participant_count", read_only=True,
                                            help_text="How many people came through it.")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = StudyLink
        fields = ["id", "task_type", "platform", "url", "token", "quota", "completion_code", "completion_url",
                  "is_active", "participants", "created_by", "created_at", "deactivated_at"]

    def get_url(self, link) -> str:
        return selectors.study_link_url(request=self.context.get("request"), link=link)


class StudyLinkInputSerializer(serializers.Serializer):
    task_type = serializers.ChoiceField(choices=TaskType.choices, help_text="One switched on in the project.")
    platform = serializers.ChoiceField(choices=StudyLink.Platform.choices, default=StudyLink.Platform.PROLIFIC)
    quota = serializers.IntegerField(min_value=1, max_value=studies.STUDY_QUOTA_MAX,
                                     help_text="Units each participant is given.")
    completion_code = serializers.CharField(required=False, allow_blank=True, default="",
                                            max_length=studies.COMPLETION_CODE_MAX_CHARS)
    completion_url = serializers.CharField(required=False, allow_blank=True, default="", max_length=500,
                                           help_text="e.g. https://app.prolific.com/submissions/complete?cc=CODE")


class StudyParticipantRowSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="participant.id")
    participant_id = serializers.CharField(source="participant.participant_id",
                                           help_text="The platform's id; exports never carry it, only the pseudonym.")
    study_id = serializers.CharField(source="participant.study_id")
    session_id = serializers.CharField(source="participant.session_id")
    pseudonym = serializers.UUIDField(allow_null=True)
    judged = serializers.IntegerField(help_text="Units judged.")
    held = serializers.IntegerField(help_text="Units leased to them now.")
    seconds_spent = serializers.FloatField(help_text="From opening the study link to their last judgment.")
    first_judgment_at = serializers.DateTimeField(allow_null=True)
    last_judgment_at = serializers.DateTimeField(allow_null=True)
    status = serializers.ChoiceField(choices=["working", "completed", "rejected"])
    started_at = serializers.DateTimeField(source="participant.started_at")
    completed_at = serializers.DateTimeField(source="participant.completed_at", allow_null=True)
    rejected_at = serializers.DateTimeField(source="participant.rejected_at", allow_null=True)
    rejection_reason = serializers.CharField(source="participant.rejection_reason")


@extend_schema_view(get=extend_schema(operation_id="study_links_list",
                                      responses={200: StudyLinkOutputSerializer(many=True), **ERRORS}))
class StudyLinkListCreateApi(ListApi):
    serializer_class = StudyLinkOutputSerializer

    def rows(self):
        project = selectors.project_get_for_user(user=self.request.user, slug=self.kwargs["slug"], manage=True)
        return selectors.study_link_list(project=project)

    def get(self, request, slug):
        return self.list_response()

    @extend_schema(operation_id="study_links_create", request=StudyLinkInputSerializer,
                   responses={201: StudyLinkOutputSerializer, **ERRORS, **ARCHIVED})
    def post(self, request, slug):
        project = selectors.project_get_for_user(user=request.user, slug=slug, manage=True)
        data = StudyLinkInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        link = studies.study_link_create(project=project, actor=request.user, **data.validated_data)
        link = selectors.study_link_list(project=project).get(pk=link.pk)
        return Response(StudyLinkOutputSerializer(link, context={"request": request}).data,
                        status=status.HTTP_201_CREATED)


class StudyLinkDeactivateApi(APIView):
    @extend_schema(operation_id="study_links_deactivate", request=None,
                   responses={200: StudyLinkOutputSerializer, **ERRORS})
    def post(self, request, slug, link_id):
        """Nobody new can join through it; participants who started may finish."""
        link = selectors.study_link_get_for_user(user=request.user, slug=slug, link_id=link_id)
        studies.study_link_deactivate(link=link, actor=request.user)
        link = selectors.study_link_get_for_user(user=request.user, slug=slug, link_id=link_id)
        return Response(StudyLinkOutputSerializer(link, context={"request": request}).data)


@extend_schema_view(get=extend_schema(operation_id="study_participants_list",
                                      responses={200: StudyParticipantRowSerializer(many=True), **ERRORS}))
class StudyParticipantListApi(ListApi):
    serializer_class = StudyParticipantRowSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return StudyParticipant.objects.none()
        return self.rows()

    def rows(self):
        self.link = selectors.study_link_get_for_user(user=self.request.user, slug=self.kwargs["slug"],
                                                      link_id=self.kwargs["link_id"])
        return self.link.participants.order_by("id")

    def get(self, request, slug, link_id):
        page = self.paginate_queryset(self.get_queryset())
        rows = selectors.study_participant_rows(link=self.link, participants=page)
        return self.get_paginated_response(self.get_serializer(rows, many=True).data)


class StudyParticipantRejectApi(APIView):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "StudyParticipantRejectInput"

        reason = serializers.CharField(max_length=400, help_text="Shown to the participant and kept in the audit log.")

    @extend_schema(operation_id="study_participants_reject", request=InputSerializer,
                   responses={200: StudyParticipantRowSerializer, **ERRORS})
    def post(self, request, slug, link_id, participant_id):
        """Their judgments are marked excluded, as a suspension marks them, and they get no more work."""
        participant = selectors.study_participant_get_for_user(user=request.user, slug=slug, link_id=link_id,
                                                               participant_id=participant_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        participant = studies.study_participant_reject(participant=participant, actor=request.user,
                                                       reason=data.validated_data["reason"])
        row = selectors.study_participant_rows(link=participant.link, participants=[participant])[0]
        return Response(StudyParticipantRowSerializer(row).data)
