"""Who may act in which organization, and fetching by ``(id, organization)``.

Every entry point (API view, websocket consumer, web page) resolves an :class:`Access` first: the
organization from the URL, the caller's effective role in it, and the API key if one was used. A caller
who is not a member gets the same not-found error as for an organization that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models

from core.db import unique_or_none
from core.errors import ErrorCode, SwitchboardError, not_found
from core.models import ApiKey, ApiKeyScope, Membership, Organization, Role, role_at_least

M = TypeVar("M", bound=models.Model)

# The role an API key acts with, from its strongest scope.
_SCOPE_ROLE = [
    (ApiKeyScope.ADMIN, Role.ADMIN),
    (ApiKeyScope.WRITE, Role.MEMBER),
    (ApiKeyScope.READ, Role.VIEWER),
    (ApiKeyScope.APPROVE, Role.VIEWER),  # an approvals bot reads what it decides on
]


@dataclass(frozen=True)
class Access:
    organization: Organization
    role: str | None
    user: object | None
    api_key: ApiKey | None = None

    @property
    def caller_id(self) -> str:
        if self.api_key is not None:
            return f"key:{self.api_key.pk}"
        return f"user:{getattr(self.user, 'pk', None)}"

    @property
    def user_id(self) -> int | None:
        return getattr(self.user, "pk", None)

    def has_role(self, minimum: str) -> bool:
        return role_at_least(self.role, minimum)

    def may_approve(self) -> bool:
        """Keys need the ``approve`` scope; people need to be at least members."""
        if self.api_key is not None:
            return self.api_key.has_scope(ApiKeyScope.APPROVE)
        return self.has_role(Role.MEMBER)


def organization_for_slug(slug: str) -> Organization:
    org = Organization.objects.filter(slug=slug).first()
    if org is None:
        raise not_found(ErrorCode.ORGANIZATION_NOT_FOUND, "Organization")
    return org


def resolve_access(slug: str, user, api_key: ApiKey | None = None) -> Access:
    """The caller's access to organization ``slug``; not found unless they belong to it."""
    if api_key is not None and api_key.organization.slug == slug:
        org = api_key.organization  # loaded with the key
    else:
        org = unique_or_none(Organization.objects.filter(slug=slug))
    if org is None:
        raise not_found(ErrorCode.ORGANIZATION_NOT_FOUND, "Organization")
    if api_key is not None:
        if api_key.organization_id != org.pk:
            raise not_found(ErrorCode.ORGANIZATION_NOT_FOUND, "Organization")
        role = next((r for s, r in _SCOPE_ROLE if api_key.has_scope(s)), None)
        return Access(organization=org, role=role, user=user, api_key=api_key)
    if user is None or not user.is_authenticated:
        raise SwitchboardError(
            ErrorCode.AUTHENTICATION_REQUIRED, "Authentication credentials were not provided."
        )
    membership = unique_or_none(Membership.all_tenants_unsafe.filter(organization=org, user=user))
    if membership is not None:
        return Access(organization=org, role=membership.role, user=user)
    if user.is_superuser:
        return Access(organization=org, role=Role.OWNER, user=user)
    raise not_found(ErrorCode.ORGANIZATION_NOT_FOUND, "Organization")


def organizations_for_user(user) -> models.QuerySet[Organization]:
    if user.is_superuser:
        return Organization.objects.all()
    return Organization.objects.filter(
        pk__in=Membership.all_tenants_unsafe.filter(user=user).values("organization")
    )


def get_object_in_org(model: type[M], organization: Organization, pk, code: ErrorCode, what: str) -> M:
    """Fetch by ``(id, organization)``; a malformed id, a missing row and a foreign row are one not-found."""
    try:
        obj = unique_or_none(model.all_tenants_unsafe.filter(organization=organization, pk=pk))
    except (ValueError, TypeError, DjangoValidationError):  # a malformed id
        obj = None
    if obj is None:
        raise not_found(code, what)
    return obj
