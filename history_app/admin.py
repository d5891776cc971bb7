from django.contrib import admin
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from core.admin_base import TenantScopedAdmin
from core.tenancy import tenant_context
from history_app.models import Bookmark, Export


@admin.register(Bookmark)
class BookmarkAdmin(TenantScopedAdmin):
    list_display = ["session", "message", "user", "organization", "created_at"]
    search_fields = ["note", "user__username"]
    raw_id_fields = ["session", "message", "user"]


@admin.register(Export)
class ExportAdmin(TenantScopedAdmin):
    list_display = [
        "__str__",
        "organization",
        "status",
        "progress",
        "total",
        "size",
        "created_by",
        "created_at",
    ]
    list_filter = ["status"]
    readonly_fields = [
        "status",
        "filters",
        "progress",
        "total",
        "file",
        "size",
        "error",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
    ]

    def has_add_permission(self, request, *args) -> bool:
        return False


class SessionStatisticsAdminMixin:
    """Adds a read-only "Statistics" section to a session's admin change page."""

    statistics_field = "statistics_panel"

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, self.statistics_field] if obj is not None else fields

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        others = [
            (name, {**options, "fields": [f for f in options["fields"] if f != self.statistics_field]})
            for name, options in fieldsets
        ]
        return [*others, ("Statistics", {"fields": [self.statistics_field]})]

    @admin.display(description="Statistics")
    def statistics_panel(self, obj) -> str:
        from history_app.statistics import session_statistics

        with tenant_context(obj.organization):
            stats = session_statistics(obj)
        return mark_safe(render_to_string("admin/history_app/session_statistics.html", {"stats": stats}))  # noqa: S308
