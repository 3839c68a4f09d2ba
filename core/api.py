"""What every app's API shares beyond the error shape (core.api_support): the paginated list view,
and what every job's representation shows of its lifecycle."""
from rest_framework import generics, serializers

JOB_FIELDS = ["status", "message", "attempts", "heartbeat_at", "created_by", "created_at", "started_at",
              "finished_at"]


class JobSerializer(serializers.ModelSerializer):
    """Base of a job kind's output serializer: its Meta.fields end with JOB_FIELDS."""

    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True,
                                              help_text="Who started the job.")


class ListApi(generics.GenericAPIView):
    """A paginated list whose rows come from `rows()`; the schema generator gets an empty
    queryset of the serializer's model, since it calls without a user or URL arguments."""

    def rows(self):
        raise NotImplementedError

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return self.serializer_class.Meta.model.objects.none()
        return self.rows()

    def list_response(self):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)
