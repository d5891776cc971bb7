"""The one base of every organization endpoint (DESIGN.md, principle 1).

:class:`TenantScopedViewSet` resolves the organization from the URL before any handler runs, checks that
the caller belongs to it and has the role the action needs, enters the tenant context, and scopes every
queryset to the organization. Subclasses supply rows through :meth:`get_base_queryset` and cannot
replace :meth:`get_queryset`: defining it raises ``TypeError`` when the class is created.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import viewsets

from core.access import Access, get_object_in_org, resolve_access
from core.api.idempotency import IdempotentReplay, idempotency_begin, idempotency_finish
from core.errors import ErrorCode, SwitchboardError
from core.models import ApiKey, Role
from core.tenancy import tenant_context

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class TenantScopedViewSet(viewsets.GenericViewSet):
    not_found_code: ErrorCode = ErrorCode.NOT_FOUND
    not_found_what: str = "Object"
    read_role: str = Role.VIEWER
    write_role: str = Role.MEMBER
    action_roles: dict[str, str] = {}
    # Catalogues with system rows (organization null) shown to every organization.
    include_shared_rows: bool = False
    # The field that ties a row to its organization ("pk" for the organization itself).
    tenant_field: str = "organization"

    # The model served; rows come from get_base_queryset(), evaluated per request inside the tenant context.
    model: type[models.Model]
    access: Access
    organization: Any

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "get_queryset" in cls.__dict__:
            raise TypeError(f"{cls.__name__} must not override get_queryset; implement get_base_queryset")

    # --- request set-up ---------------------------------------------------------------------------
    def dispatch(self, request, *args, **kwargs):
        self._tenant_scope = None
        self._idempotency = None
        try:
            response = super().dispatch(request, *args, **kwargs)
            if self._tenant_scope is not None and not getattr(response, "is_rendered", True):
                # The browsable API's renderer evaluates querysets (its filter and ordering forms call
                # get_queryset()): render while the tenant context is still open.
                response.render()
            return response
        finally:
            if self._tenant_scope is not None:
                self._tenant_scope.__exit__(None, None, None)

    def finalize_response(self, request, response, *args, **kwargs):
        if self._idempotency is not None:
            idempotency_finish(self._idempotency, response)
            self._idempotency = None
        return super().finalize_response(request, response, *args, **kwargs)

    def handle_exception(self, exc):
        if isinstance(exc, IdempotentReplay):
            return exc.response()
        return super().handle_exception(exc)

    def initial(self, request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)  # authentication, IsAuthenticated, throttling
        api_key = request.auth if isinstance(request.auth, ApiKey) else None
        self.access = resolve_access(kwargs.get("org_slug", ""), request.user, api_key)
        self.organization = self.access.organization
        request.organization = self.organization
        self._tenant_scope = tenant_context(self.organization)
        self._tenant_scope.__enter__()
        self.check_role()
        self._idempotency = idempotency_begin(request, self.access)

    def required_role(self) -> str:
        if self.action in self.action_roles:
            return self.action_roles[self.action]
        return self.read_role if self.request.method in SAFE_METHODS else self.write_role

    def check_role(self) -> None:
        needed = self.required_role()
        if not self.access.has_role(needed):
            raise SwitchboardError(
                ErrorCode.PERMISSION_DENIED,
                f"This action needs the {needed} role in the organization.",
                {"required_role": needed, "role": self.access.role},
            )

    # --- scoping ------------------------------------------------------------------------------------
    def get_base_queryset(self) -> models.QuerySet:
        """The rows this endpoint serves; scoping to the organization is applied on top."""
        return self.model.objects.all()

    def get_queryset(self) -> models.QuerySet:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request, no organization
            return self.model._base_manager.none()
        qs = self.get_base_queryset()
        org_filter = models.Q(**{self.tenant_field: self.organization})
        if self.include_shared_rows:
            org_filter |= models.Q(**{f"{self.tenant_field}__isnull": True})
        return qs.filter(org_filter)

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        if hasattr(self, "access"):
            context["access"] = self.access
            context["organization"] = self.organization
        return context

    def perform_create(self, serializer) -> None:
        serializer.save(organization=self.organization)


@extend_schema(parameters=[OpenApiParameter("session_id", OpenApiTypes.UUID, OpenApiParameter.PATH)])
class SessionChildViewSet(TenantScopedViewSet):
    """Endpoints under ``sessions/<session_id>/``: the session is fetched by ``(id, organization)`` first."""

    def get_session(self):
        from sessions_app.models import Session

        if not hasattr(self, "_session"):
            self._session = get_object_in_org(
                Session,
                self.organization,
                self.kwargs.get("session_id"),
                ErrorCode.SESSION_NOT_FOUND,
                "Session",
            )
        return self._session

    def initial(self, request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        self.get_session()
