"""Serializers of the history API. ``AttachmentSerializer`` is nested in the sessions app's message
serializer, so this module must not import the sessions app's API (that would be an import cycle)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.api.fields import TenantRelatedField
from history_app.models import Bookmark, Export, ExportStatus
from history_app.services.checkpoints import checkpoint_state
from sessions_app.models import Attachment, Checkpoint, Message, MessageRole, Session


class BookmarkSerializer(serializers.ModelSerializer):
    session = TenantRelatedField(what="Session", model=Session)
    message = TenantRelatedField(what="Message", model=Message, required=False, allow_null=True)
    session_name = serializers.CharField(source="session.name", read_only=True)

    class Meta:
        model = Bookmark
        fields = ["id", "session", "session_name", "message", "note", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        validators = []

    def validate(self, attrs):
        message = attrs.get("message")
        session = attrs.get("session") or getattr(self.instance, "session", None)
        if message is not None and message.session_id != session.pk:
            raise serializers.ValidationError({"message": ["Message not found."]})
        return attrs


class BookmarkUpdateSerializer(serializers.Serializer):
    note = serializers.CharField(allow_blank=True, max_length=10_000)


class AttachmentSerializer(serializers.ModelSerializer):
    """An attachment as listed with its message: no bytes, the analysis summed up."""

    analysis = serializers.SerializerMethodField()

    class Meta:
        model = Attachment
        fields = ["id", "filename", "content_type", "size", "sha256", "analysis", "created_at"]
        read_only_fields = fields

    def get_analysis(self, obj: Attachment) -> dict:
        analysis = obj.analysis or {}
        return {
            "kind": analysis.get("kind"),
            "summary": analysis.get("summary", ""),
            "details": analysis.get("details") or {},
            "error": analysis.get("error"),
        }


class SearchQuerySerializer(serializers.Serializer):
    q = serializers.CharField(trim_whitespace=False, allow_blank=True)
    role = serializers.MultipleChoiceField(choices=MessageRole.choices, required=False)
    limit = serializers.IntegerField(min_value=1, max_value=100, default=20)
    offset = serializers.IntegerField(min_value=0, max_value=10_000, default=0)


class SearchHitSerializer(serializers.Serializer):
    message = serializers.UUIDField(source="message_id")
    session = serializers.SerializerMethodField()
    role = serializers.CharField()
    seq = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    rank = serializers.FloatField()
    snippet = serializers.CharField(help_text="HTML-escaped text with matches in <mark> tags.")

    def get_session(self, hit) -> dict:
        return {"id": str(hit.session_id), "name": hit.session_name}


class CheckpointSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    message_count = serializers.SerializerMethodField()

    class Meta:
        model = Checkpoint
        fields = [
            "id",
            "session",
            "seq",
            "message_seq",
            "reason",
            "name",
            "created_by",
            "message_count",
            "created_at",
        ]
        read_only_fields = fields

    def get_message_count(self, obj: Checkpoint) -> int:
        state = obj.state or {}
        # A checkpoint by reference holds the session's messages up to its message_seq (numbered from 1).
        return obj.message_seq if state.get("by_reference") else len(state.get("messages", []))


class CheckpointDetailSerializer(CheckpointSerializer):
    state = serializers.SerializerMethodField(
        help_text="Messages, tool calls, config and tags at this point."
    )

    class Meta(CheckpointSerializer.Meta):
        fields = [*CheckpointSerializer.Meta.fields, "state"]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_state(self, obj: Checkpoint) -> dict:
        return checkpoint_state(obj)


class CheckpointCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class ForkSerializer(serializers.Serializer):
    checkpoint = TenantRelatedField(what="Checkpoint", model=Checkpoint, required=False)
    message = TenantRelatedField(what="Message", model=Message, required=False)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")

    def validate(self, attrs):
        if ("checkpoint" in attrs) == ("message" in attrs):
            raise serializers.ValidationError("Give exactly one of checkpoint and message.")
        return attrs


class ExportSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Export
        fields = [
            "id",
            "status",
            "filters",
            "progress",
            "total",
            "size",
            "error",
            "created_by",
            "download_url",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_download_url(self, obj: Export) -> str | None:
        if obj.status != ExportStatus.COMPLETED:
            return None
        request = self.context.get("request")
        path = f"/api/v1/orgs/{obj.organization.slug}/exports/{obj.pk}/download/"
        return request.build_absolute_uri(path) if request else path


class ImportSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A JSONL file in the export format.")
