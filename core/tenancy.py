"""The tenant context and the fail-closed manager (DESIGN.md, principle 1).

API views, websocket consumers and background tasks enter :func:`tenant_context` with the organization
they act for; every query through a tenant-owned model's default manager is then limited to it. Without a
context the manager raises, so a forgotten scope is an error instead of a leak. The escape hatch is the
model's ``all_tenants_unsafe`` manager or :func:`unscoped_tenant_access`, reserved for admin, migrations,
management commands and the tenancy code itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

from django.db import models

if TYPE_CHECKING:
    from core.models import Organization

_current_org: ContextVar[Organization | None] = ContextVar("switchboard_current_org", default=None)
_unscoped: ContextVar[bool] = ContextVar("switchboard_unscoped", default=False)


class TenantContextMissing(RuntimeError):
    """A tenant-owned model was queried with no organization in context."""


@contextmanager
def tenant_context(organization: Organization) -> Iterator[Organization]:
    """Scope every tenant-owned query inside the block to ``organization``."""
    if organization is None or organization.pk is None:
        raise TenantContextMissing("tenant_context() needs a saved organization")
    token = _current_org.set(organization)
    unscoped_token = _unscoped.set(False)
    try:
        yield organization
    finally:
        _unscoped.reset(unscoped_token)
        _current_org.reset(token)


@contextmanager
def unscoped_tenant_access() -> Iterator[None]:
    """Let default managers see every tenant. Admin, migrations and management commands only."""
    token = _unscoped.set(True)
    try:
        yield
    finally:
        _unscoped.reset(token)


def current_organization() -> Organization | None:
    return _current_org.get()


def require_organization() -> Organization:
    org = _current_org.get()
    if org is None:
        raise TenantContextMissing("no organization in context: enter tenant_context(org) first")
    return org


class TenantManager(models.Manager):
    """Default manager of tenant-owned models: only the current organization's rows, or an error."""

    def get_queryset(self) -> models.QuerySet:
        qs = super().get_queryset()
        if _unscoped.get():
            return qs
        return self.scope(qs, require_organization())

    def scope(self, qs: models.QuerySet, organization: Organization) -> models.QuerySet:
        return qs.filter(organization=organization)


class SharedOrTenantManager(TenantManager):
    """For catalogues with system rows (``organization`` null) visible to every organization."""

    def scope(self, qs: models.QuerySet, organization: Organization) -> models.QuerySet:
        return qs.filter(models.Q(organization=organization) | models.Q(organization__isnull=True))


class TenantOwnedModel(models.Model):
    """Abstract base of every tenant-owned row: an indexed organization and the fail-closed manager."""

    organization = models.ForeignKey(
        "core.Organization", on_delete=models.CASCADE, related_name="+", db_index=True
    )

    objects = TenantManager()
    all_tenants_unsafe = models.Manager()  # noqa: DJ012 (ruff takes a manager for a field)

    class Meta:
        abstract = True
        base_manager_name = "all_tenants_unsafe"
