from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db import transaction

from core.access import resolve_access
from core.admin_base import TenantScopedAdmin, TenantScopedPermissions, managed_org_ids
from core.api_keys import api_key_issue, api_key_revoke
from core.errors import SwitchboardError
from core.models import ApiKey, ApiKeyScope, IdempotencyRecord, Membership, Organization, Role
from core.services import check_owner_rules, organization_lock
from core.tenancy import tenant_context


@admin.register(Organization)
class OrganizationAdmin(TenantScopedPermissions, admin.ModelAdmin):
    list_display = ["name", "slug", "default_model", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ("name",)}

    def has_add_permission(self, request, *args) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None) -> bool:
        if request.user.is_superuser:
            return True
        if obj is None:
            return bool(managed_org_ids(request))
        return Membership.all_tenants_unsafe.filter(
            organization=obj, user=request.user, role=Role.OWNER
        ).exists()


@admin.register(Membership)
class MembershipAdmin(TenantScopedAdmin):
    """Memberships under the same owner rules as the API: only owners grant, change or remove the owner
    role, and an organization keeps at least one owner."""

    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__username", "user__email", "organization__name"]
    raw_id_fields = ["user"]
    any_user_fields = ("user",)

    def get_readonly_fields(self, request, obj=None):
        return ("user", "organization") if obj is not None else ()

    def get_form(self, request, obj=None, **kwargs):
        base = super().get_form(request, obj, **kwargs)
        before = Membership.all_tenants_unsafe.get(pk=obj.pk) if obj is not None else None

        class OwnerRulesForm(base):
            def clean(self):
                data = super().clean()
                organization = before.organization if before else data.get("organization")
                if organization is not None and data.get("role"):
                    # The admin saves in the transaction this runs in: the lock holds until then.
                    _owner_rules(request, organization, before, data["role"], lock=True)
                return data

        return OwnerRulesForm

    def has_delete_permission(self, request, obj=None) -> bool:
        if not super().has_delete_permission(request, obj):
            return False
        try:
            if obj is not None:
                _owner_rules(request, obj.organization, obj, None)
        except forms.ValidationError:
            return False
        return True

    def delete_model(self, request, obj) -> None:
        with transaction.atomic():
            _owner_rules(request, obj.organization, obj, None, lock=True)
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset) -> None:
        for membership in queryset.select_related("organization"):
            try:
                self.delete_model(request, membership)
            except forms.ValidationError as refused:
                self.message_user(request, f"{membership}: {refused.messages[0]}", messages.WARNING)


def _owner_rules(
    request, organization: Organization, membership: Membership | None, role: str | None, lock: bool = False
):
    """:func:`core.services.check_owner_rules` for the staff user acting in ``organization``; ``lock``:
    under the organization's row lock, as the API's changes are (in the caller's transaction)."""
    try:
        access = resolve_access(organization.slug, request.user)
        with tenant_context(organization):
            if lock:
                organization_lock(organization.pk)
            check_owner_rules(access, membership, role)
    except SwitchboardError as refused:
        raise forms.ValidationError(refused.message) from None


class ApiKeyCreateForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=ApiKeyScope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[ApiKeyScope.READ, ApiKeyScope.WRITE],
    )

    class Meta:
        model = ApiKey
        fields = ["organization", "name", "scopes", "expires_at"]


@admin.register(ApiKey)
class ApiKeyAdmin(TenantScopedAdmin):
    list_display = [
        "name",
        "organization",
        "prefix",
        "scopes",
        "created_by",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    ]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix"]
    readonly_fields = ["prefix", "created_by", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyCreateForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["organization", "name", "scopes", "expires_at"]
        return [
            "organization",
            "name",
            "prefix",
            "scopes",
            "created_by",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
        ]

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        issued = api_key_issue(
            organization=form.cleaned_data["organization"],
            name=form.cleaned_data["name"],
            scopes=form.cleaned_data["scopes"],
            created_by=request.user,
            expires_at=form.cleaned_data.get("expires_at"),
        )
        obj.pk, obj.prefix = issued.api_key.pk, issued.api_key.prefix
        obj._state.adding = False
        messages.warning(
            request, f"The key for {issued.api_key.name} is shown once; copy it now: {issued.secret}"
        )

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset):
        for key in queryset:
            api_key_revoke(key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(TenantScopedAdmin):
    list_display = ["key", "organization", "caller", "method", "path", "response_status", "created_at"]
    search_fields = ["key", "path"]

    def has_add_permission(self, request, *args) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
