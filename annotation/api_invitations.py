"""Invitations through the API: a project's researchers and admins create, list and revoke them
(only admins invite admins)."""
from django.urls import reverse
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import invitations, selectors
from annotation.models import Invitation, Membership
from core.api import ListApi
from core.api_support import ERRORS


class InvitationOutputSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(help_text="The link to send: opening it joins the project.")
    state = serializers.SerializerMethodField(help_text="usable, expired, revoked or used_up.")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = Invitation
        fields = ["id", "role", "url", "token", "code", "expires_at", "max_uses", "uses", "state", "created_by",
                  "created_at", "revoked_at"]

    def get_url(self, invitation) -> str:
        path = reverse("invitation", kwargs={"token": invitation.token})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    def get_state(self, invitation) -> str:
        return selectors.invitation_unusable_reason(invitation=invitation) or "usable"


class InvitationInputSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Membership.Role.choices, default=Membership.Role.ANNOTATOR,
                                   help_text="Researchers invite annotators and researchers; only admins invite "
                                             "admins.")
    expires_in_days = serializers.IntegerField(min_value=1, max_value=invitations.INVITATION_MAX_DAYS, default=7)
    max_uses = serializers.IntegerField(min_value=1, max_value=invitations.INVITATION_MAX_USES, default=1)
    join_code = serializers.BooleanField(default=False,
                                         help_text="Also give it a short code to type on /join-project/ "
                                                   "(annotator invitations only).")
    email = serializers.EmailField(required=False, allow_blank=True,
                                   help_text="Send the link to this address (where SMTP is configured).")


class InvitationCreatedSerializer(InvitationOutputSerializer):
    emailed = serializers.SerializerMethodField(help_text="Whether the link was e-mailed.")

    class Meta(InvitationOutputSerializer.Meta):
        fields = InvitationOutputSerializer.Meta.fields + ["emailed"]

    def get_emailed(self, invitation) -> bool:
        return bool(self.context.get("emailed"))


@extend_schema_view(get=extend_schema(operation_id="invitations_list",
                                      responses={200: InvitationOutputSerializer(many=True), **ERRORS}))
class InvitationListCreateApi(ListApi):
    serializer_class = InvitationOutputSerializer

    def rows(self):
        project = selectors.project_get_for_user(user=self.request.user, slug=self.kwargs["slug"], manage=True)
        return selectors.invitation_list(project=project)

    def get(self, request, slug):
        return self.list_response()

    @extend_schema(operation_id="invitations_create", request=InvitationInputSerializer,
                   responses={201: InvitationCreatedSerializer, **ERRORS})
    def post(self, request, slug):
        """An invitation to a role higher than the caller's is refused (403)."""
        project = selectors.project_get_for_user(user=request.user, slug=slug, manage=True)
        data = InvitationInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        email = data.validated_data.pop("email", "")
        invitation = invitations.invitation_create(project=project, actor=request.user, **data.validated_data)
        emailed = False
        if email:
            link = request.build_absolute_uri(reverse("invitation", kwargs={"token": invitation.token}))
            emailed = invitations.invitation_email(invitation=invitation, to=email, link=link)
        context = {"request": request, "emailed": emailed}
        return Response(InvitationCreatedSerializer(invitation, context=context).data, status=status.HTTP_201_CREATED)


class InvitationRevokeApi(APIView):
    @extend_schema(operation_id="invitations_revoke", request=None,
                   responses={200: InvitationOutputSerializer, **ERRORS})
    def post(self, request, slug, invitation_id):
        """Nobody can accept it from now on; who joined through it stays a member."""
        invitation = selectors.invitation_get_for_user(user=request.user, slug=slug, invitation_id=invitation_id)
        invitation = invitations.invitation_revoke(invitation=invitation, actor=request.user)
        return Response(InvitationOutputSerializer(invitation, context={"request": request}).data)
