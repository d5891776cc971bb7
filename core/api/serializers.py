from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework import serializers

from core.models import ApiKey, ApiKeyScope, Membership, Organization, Role

User = get_user_model()


class UserSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "username", "email", "first_name", "last_name"]


class OrganizationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Organization
        fields = [
            "id",
            "name",
            "slug",
            "default_model",
            "idle_timeout_minutes",
            "approval_timeout_seconds",
            "created_at",
        ]
        read_only_fields = ["id", "slug", "created_at"]


class MyMembershipSerializer(serializers.ModelSerializer):
    organization = OrganizationSerializer(read_only=True)

    class Meta:
        model = Membership
        fields = ["organization", "role"]


class MeSerializer(serializers.Serializer):
    user = UserSummarySerializer(allow_null=True)
    is_superuser = serializers.BooleanField()
    api_key = serializers.DictField(allow_null=True)
    memberships = MyMembershipSerializer(many=True)
    organizations = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="Superusers only: the slug of every organization.",
    )


class MembershipSerializer(serializers.ModelSerializer):
    user = UserSummarySerializer(read_only=True)
    username = serializers.CharField(write_only=True, required=False)
    email = serializers.EmailField(write_only=True, required=False)
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)

    class Meta:
        model = Membership
        fields = ["id", "user", "username", "email", "role", "created_at"]
        read_only_fields = ["id", "created_at"]


class ApiKeySerializer(serializers.ModelSerializer):
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=ApiKeyScope.choices),
        allow_empty=False,
        default=lambda: [ApiKeyScope.READ, ApiKeyScope.WRITE],
    )
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "scopes",
            "created_by",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "is_active",
        ]
        read_only_fields = ["id", "prefix", "created_by", "created_at", "revoked_at", "last_used_at"]


class ApiKeyCreatedSerializer(ApiKeySerializer):
    secret = serializers.CharField(read_only=True, help_text="The full key. Shown once, never again.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "secret"]


class StreamTicketSerializer(serializers.Serializer):
    ticket = serializers.CharField()
    expires_in = serializers.IntegerField()
