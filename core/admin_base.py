"""Django admin for a multi-tenant site.

Admin views run with :func:`unscoped_tenant_access` (the site wraps every view), and every tenant-owned
model admin derives from :class:`TenantScopedAdmin`, which limits non-superuser staff to the
organizations where they are admin or owner: the rows listed, the choices offered in foreign keys, and
what may be saved. Org admins need no Django model permissions: their organization role is what counts.
"""

from __future__ import annotations

from functools import update_wrapper

from django.contrib import admin
from django.contrib.admin.utils import get_fields_from_path
from django.contrib.auth import get_user_model
from django.db import models

from core.models import Membership, Organization, Role
from core.tenancy import TenantOwnedModel, unscoped_tenant_access

MANAGING_ROLES = (Role.ADMIN, Role.OWNER)


class SwitchboardAdminSite(admin.AdminSite):
    site_header = "Switchboard administration"
    site_title = "Switchboard"
    index_title = "Administration"

    def has_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_staff

    def admin_view(self, view, cacheable=False):
        inner = super().admin_view(view, cacheable)

        def unscoped(request, *args, **kwargs):
            with unscoped_tenant_access():
                response = inner(request, *args, **kwargs)
                if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                    response.render()  # templates evaluate querysets: render inside the access block
                return response

        return update_wrapper(unscoped, inner)


def managed_org_ids(request) -> list[int] | None:
    """Organizations the staff user administers; None for superusers (all of them)."""
    user = request.user
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return []  # the login page lists apps too: nobody signed in manages anything
    if user.is_superuser:
        return None
    if not hasattr(request, "_managed_org_ids"):
        request._managed_org_ids = list(
            Membership.all_tenants_unsafe.filter(user=request.user, role__in=MANAGING_ROLES).values_list(
                "organization_id", flat=True
            )
        )
    return request._managed_org_ids


def _limit(qs: models.QuerySet, org_ids: list[int] | None, shared: bool = False) -> models.QuerySet:
    if org_ids is None:
        return qs
    model = qs.model
    if model is Organization:
        return qs.filter(pk__in=org_ids)
    if not any(f.name == "organization" for f in model._meta.get_fields()):
        return qs
    q = models.Q(organization_id__in=org_ids)
    if shared:
        q |= models.Q(organization__isnull=True)
    return qs.filter(q)


class TenantScopedPermissions:
    """Permission checks by organization role, shared by model admins and inlines."""

    any_user_fields: tuple[str, ...] = ()  # user fields that may name any account (adding a member)

    def _may(self, request, obj=None) -> bool:
        org_ids = managed_org_ids(request)
        if org_ids is None:
            return True
        if not org_ids:
            return False
        if obj is None:
            return True
        org_id = obj.pk if isinstance(obj, Organization) else getattr(obj, "organization_id", None)
        return org_id in org_ids

    def has_module_permission(self, request) -> bool:
        return self._may(request)

    def has_view_permission(self, request, obj=None) -> bool:
        if obj is not None and getattr(obj, "organization_id", 0) is None:
            return True  # system presets: visible to every organization
        return self._may(request, obj)

    def has_add_permission(self, request, *args) -> bool:
        return self._may(request)

    def has_change_permission(self, request, obj=None) -> bool:
        return self._may(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return self._may(request, obj)

    def get_queryset(self, request):
        return _limit(super().get_queryset(request), managed_org_ids(request), shared=True)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        related = db_field.related_model
        org_ids = managed_org_ids(request)
        if related is Organization or issubclass(related, TenantOwnedModel):
            kwargs["queryset"] = _limit(related._base_manager.all(), org_ids, shared=True)
        if related is get_user_model() and org_ids is not None and db_field.name not in self.any_user_fields:
            # People of the admin's organizations only: not every account on the platform.
            kwargs["queryset"] = related._default_manager.filter(
                pk__in=Membership.all_tenants_unsafe.filter(organization_id__in=org_ids).values("user_id")
            )
        if related is Organization and org_ids is not None:
            # A row without an organization is a system preset every organization sees: only superusers
            # may make one. An organization's admin must pick one of their organizations.
            kwargs["required"] = True
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        related = db_field.related_model
        if issubclass(related, TenantOwnedModel):
            kwargs["queryset"] = _limit(related._base_manager.all(), managed_org_ids(request), shared=True)
        return super().formfield_for_manytomany(db_field, request, **kwargs)


class TenantScopedAdmin(TenantScopedPermissions, admin.ModelAdmin):
    list_select_related = ("organization",)

    def get_list_filter(self, request):
        # A plain filter on a relation lists every row of the related model, other organizations' too;
        # RelatedOnlyFieldListFilter offers only values found in this admin's (scoped) rows.
        filters = [
            (entry, admin.RelatedOnlyFieldListFilter)
            if isinstance(entry, str) and get_fields_from_path(self.model, entry)[-1].is_relation
            else entry
            for entry in super().get_list_filter(request)
        ]
        return (("organization", admin.RelatedOnlyFieldListFilter), *filters)


class TenantScopedTabularInline(TenantScopedPermissions, admin.TabularInline):
    extra = 0
    show_change_link = True
