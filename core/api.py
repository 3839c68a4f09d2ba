"""What every job's API representation shows of its lifecycle."""
from rest_framework import serializers

JOB_FIELDS = ["status", "message", "attempts", "heartbeat_at", "created_by", "created_at", "started_at",
              "finished_at"]


class JobSerializer(serializers.ModelSerializer):
    """Base of a job kind's output serializer: its Meta.fields end with JOB_FIELDS."""

    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True,
                                              help_text="Who started the job.")
