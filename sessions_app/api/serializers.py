from __future__ import annotations

import re

from rest_framework import serializers

from core.api.fields import TenantRelatedField, storable_json
from core.events import event_envelope
from history_app.api.serializers import AttachmentSerializer
from sessions_app.config import validate_session_config
from sessions_app.models import (
    Agent,
    Message,
    ProviderCredential,
    Run,
    Session,
    SessionEvent,
    SessionTemplate,
    Tag,
)

COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")


class AgentSerializer(serializers.ModelSerializer):
    tools = serializers.ListField(child=serializers.CharField(max_length=100), required=False)

    class Meta:
        model = Agent
        fields = [
            "id",
            "name",
            "slug",
            "description",
            "system_prompt",
            "model",
            "default_transport",
            "tools",
            "approval_mode",
            "max_context_messages",
            "max_context_tokens",
            "is_active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        validators = []  # the (organization, slug) uniqueness is checked by the service: CONFLICT

    def validate_max_context_messages(self, value: int) -> int:
        if not 1 <= value <= 10_000:
            raise serializers.ValidationError("Must be between 1 and 10000.")
        return value

    def validate_max_context_tokens(self, value: int) -> int:
        if not 100 <= value <= 2_000_000:
            raise serializers.ValidationError("Must be between 100 and 2000000.")
        return value


class TagSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tag
        fields = ["id", "name", "color", "is_system", "source", "created_at"]
        read_only_fields = ["id", "is_system", "source", "created_at"]
        validators = []

    def validate_color(self, value: str) -> str:
        if not COLOR_RE.match(value):
            raise serializers.ValidationError("Use a #rrggbb colour.")
        return value.lower()

    def validate_name(self, value: str) -> str:
        value = value.strip()
        if not value:
            raise serializers.ValidationError("Must not be empty.")
        return value


class TemplateSerializer(serializers.ModelSerializer):
    agent = TenantRelatedField(what="Agent", slug_field="slug", model=Agent, required=False, allow_null=True)
    config = serializers.JSONField(required=False, validators=[storable_json])
    tags = serializers.ListField(child=serializers.CharField(max_length=50), required=False)

    class Meta:
        model = SessionTemplate
        fields = ["id", "name", "description", "agent", "config", "tags", "is_system", "source", "created_at"]
        read_only_fields = ["id", "is_system", "source", "created_at"]
        validators = []

    def validate_config(self, value):
        return validate_session_config(value)


class SessionSerializer(serializers.ModelSerializer):
    agent = TenantRelatedField(what="Agent", slug_field="slug", model=Agent, required=False)
    template = TenantRelatedField(what="Template", model=SessionTemplate, required=False, allow_null=True)
    config = serializers.JSONField(required=False, validators=[storable_json], help_text="See SessionConfig.")
    tags = serializers.ListField(
        child=serializers.CharField(max_length=50),
        required=False,
        write_only=True,
        help_text="Tag names. Responses list each tag's name and colour.",
    )
    metadata = serializers.JSONField(required=False, validators=[storable_json])
    owner = serializers.CharField(source="owner.username", read_only=True, default=None)
    agent_name = serializers.CharField(source="agent.name", read_only=True)

    class Meta:
        model = Session
        fields = [
            "id",
            "name",
            "agent",
            "agent_name",
            "template",
            "owner",
            "status",
            "ended_reason",
            "runtime_state",
            "config",
            "tags",
            "metadata",
            "parent",
            "forked_at_seq",
            "last_event_seq",
            "last_activity_at",
            "expires_at",
            "ended_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "status",
            "ended_reason",
            "runtime_state",
            "parent",
            "forked_at_seq",
            "last_event_seq",
            "last_activity_at",
            "ended_at",
            "created_at",
            "updated_at",
        ]

    def to_representation(self, instance: Session):
        data = super().to_representation(instance)
        data["tags"] = [{"name": t.name, "color": t.color} for t in instance.tags.all()]
        return data


class SessionUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    config = serializers.JSONField(required=False, validators=[storable_json])
    tags = serializers.ListField(child=serializers.CharField(max_length=50), required=False)
    metadata = serializers.DictField(required=False, validators=[storable_json])
    expires_at = serializers.DateTimeField(required=False)


class MessageSerializer(serializers.ModelSerializer):
    author = serializers.CharField(source="author.username", read_only=True, default=None)
    attachments = AttachmentSerializer(many=True, read_only=True)

    class Meta:
        model = Message
        fields = [
            "id",
            "session",
            "seq",
            "role",
            "content",
            "status",
            "author",
            "attachments",
            "run",
            "tool_call",
            "prompt_tokens",
            "completion_tokens",
            "metadata",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class MessagePostSerializer(serializers.Serializer):
    content = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=None)
    model = serializers.CharField(max_length=100, required=False, help_text="Model for this run only.")


class RunSerializer(serializers.ModelSerializer):
    class Meta:
        model = Run
        fields = [
            "id",
            "session",
            "trigger_message",
            "status",
            "model",
            "provider",
            "attempts",
            "worker",
            "queued_at",
            "started_at",
            "finished_at",
            "ttft_ms",
            "total_ms",
            "prompt_tokens",
            "completion_tokens",
            "error_code",
            "error_message",
            "cancel_requested_at",
        ]
        read_only_fields = fields


class MessagePostResponseSerializer(serializers.Serializer):
    message = MessageSerializer()
    run = RunSerializer()
    reply = MessageSerializer(allow_null=True, help_text="The assistant's reply, when waited for.")


class SessionEventSerializer(serializers.ModelSerializer):
    """The event envelope of DESIGN.md principle 2."""

    class Meta:
        model = SessionEvent
        fields = ["seq", "type", "session", "run", "created_at", "data"]

    def to_representation(self, instance: SessionEvent):
        return event_envelope(instance)


class ProviderCredentialSerializer(serializers.ModelSerializer):
    api_key = serializers.CharField(
        write_only=True, required=False, allow_blank=True, help_text="Stored encrypted; never returned."
    )
    has_api_key = serializers.SerializerMethodField()

    class Meta:
        model = ProviderCredential
        fields = [
            "id",
            "name",
            "kind",
            "base_url",
            "api_version",
            "api_key",
            "has_api_key",
            "default_model",
            "timeout_seconds",
            "max_retries",
            "is_default",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "has_api_key", "created_at", "updated_at"]
        validators = []

    def get_has_api_key(self, obj) -> bool:
        return bool(obj.api_key_encrypted)

    def validate(self, attrs):
        kind = attrs.get("kind", getattr(self.instance, "kind", None))
        base_url = attrs.get("base_url", getattr(self.instance, "base_url", ""))
        if kind in ("azure", "compatible") and not base_url:
            raise serializers.ValidationError({"base_url": ["Required for this kind of provider."]})
        return attrs
