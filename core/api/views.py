"""Organization, members, API keys, and the caller's own identity."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from core.access import organizations_for_user
from core.api.serializers import (
    ApiKeyCreatedSerializer,
    ApiKeySerializer,
    MembershipSerializer,
    MeSerializer,
    OrganizationSerializer,
    StreamTicketSerializer,
)
from core.api.viewsets import TenantScopedViewSet
from core.api_keys import api_key_issue, api_key_revoke
from core.errors import ErrorCode, SwitchboardError
from core.models import ApiKey, Membership, Organization, Role
from core.services import membership_add, membership_change_role, membership_remove, organization_update

User = get_user_model()


class MeView(APIView):
    """The caller: user, API key in use, and memberships."""

    @extend_schema(responses=MeSerializer)
    def get(self, request):
        key = request.auth if isinstance(request.auth, ApiKey) else None
        user = request.user if getattr(request.user, "pk", None) else None
        if key is not None:
            memberships = Membership.all_tenants_unsafe.filter(organization=key.organization, user=user)
        elif user is not None:
            memberships = Membership.all_tenants_unsafe.filter(user=user)
        else:
            memberships = Membership.all_tenants_unsafe.none()
        data = {
            "user": user,
            "is_superuser": bool(user and user.is_superuser and key is None),
            "api_key": (
                {
                    "id": str(key.pk),
                    "name": key.name,
                    "organization": key.organization.slug,
                    "scopes": key.scopes,
                }
                if key
                else None
            ),
            "memberships": memberships.select_related("organization"),
        }
        if user is not None and user.is_superuser and key is None:
            data["organizations"] = [o.slug for o in organizations_for_user(user)]
        return Response(MeSerializer(data).data)


class OrganizationViewSet(TenantScopedViewSet):
    """The organization itself: everyone reads, owners change settings."""

    serializer_class = OrganizationSerializer
    model = Organization
    not_found_code = ErrorCode.ORGANIZATION_NOT_FOUND
    write_role = Role.OWNER

    tenant_field = "pk"

    def retrieve(self, request, *args, **kwargs):
        return Response(self.get_serializer(self.organization).data)

    def partial_update(self, request, *args, **kwargs):
        serializer = self.get_serializer(self.organization, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        org = organization_update(self.organization, **serializer.validated_data)
        return Response(self.get_serializer(org).data)


class MembershipViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, TenantScopedViewSet
):
    serializer_class = MembershipSerializer
    model = Membership
    not_found_code = ErrorCode.MEMBER_NOT_FOUND
    write_role = Role.ADMIN
    ordering = ["created_at"]
    ordering_fields = ["created_at", "role"]
    filterset_fields = ["role"]

    def get_base_queryset(self):
        return Membership.objects.select_related("user")

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        lookup = (
            {"username": data["username"]}
            if data.get("username")
            else ({"email__iexact": data["email"]} if data.get("email") else None)
        )
        if lookup is None:
            raise SwitchboardError(
                ErrorCode.VALIDATION_ERROR,
                "Give a username or an email.",
                {"username": ["This field is required."]},
            )
        user = User.objects.filter(**lookup).first()
        if user is None:
            raise SwitchboardError(
                ErrorCode.VALIDATION_ERROR, "No such user.", {"username": ["No such user."]}
            )
        membership = membership_add(access=self.access, user=user, role=data["role"])
        return Response(self.get_serializer(membership).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        membership = self.get_object()
        serializer = self.get_serializer(membership, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        role = serializer.validated_data.get("role", membership.role)
        return Response(
            self.get_serializer(
                membership_change_role(access=self.access, membership=membership, role=role)
            ).data
        )

    def perform_destroy(self, instance):
        membership_remove(access=self.access, membership=instance)


class ApiKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """API keys of the organization. The secret is in the create response only. DELETE revokes."""

    serializer_class = ApiKeySerializer
    model = ApiKey
    not_found_code = ErrorCode.API_KEY_NOT_FOUND
    read_role = Role.ADMIN
    write_role = Role.ADMIN
    ordering = ["-created_at"]

    def get_base_queryset(self):
        return ApiKey.objects.select_related("created_by")

    @extend_schema(responses={201: ApiKeyCreatedSerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        creator = request.user if getattr(request.user, "pk", None) else None
        issued = api_key_issue(
            organization=self.organization, created_by=creator, **serializer.validated_data
        )
        body = ApiKeyCreatedSerializer(issued.api_key).data
        body["secret"] = issued.secret
        response = Response(body, status=status.HTTP_201_CREATED)
        response.secret_fields = ("secret",)  # shown once: an idempotent replay does not keep it
        return response

    @extend_schema(request=None, responses=ApiKeySerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request, *args, **kwargs):
        return Response(self.get_serializer(api_key_revoke(self.get_object())).data)

    def destroy(self, request, *args, **kwargs):
        api_key_revoke(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class StreamTicketViewSet(TenantScopedViewSet):
    """``POST .../stream-ticket/``: a single-use ticket, valid ``WS_TICKET_SECONDS``, for ``?ticket=`` on a
    websocket or SSE URL, so a program never puts its long-lived key in a URL."""

    model = Organization
    tenant_field = "pk"
    write_role = Role.VIEWER

    @extend_schema(request=None, responses={201: StreamTicketSerializer})
    def create(self, request, *args, **kwargs):
        from django.conf import settings

        from core.stream_auth import ticket_issue

        return Response(
            {"ticket": ticket_issue(self.access), "expires_in": settings.WS_TICKET_SECONDS},
            status=status.HTTP_201_CREATED,
        )
