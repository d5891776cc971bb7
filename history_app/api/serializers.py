from __future__ import annotations

from rest_framework import serializers

from core.api.fields import TenantRelatedField
from history_app.models import Bookmark
from sessions_app.models import Message, Session


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
