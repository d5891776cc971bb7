from django.contrib import admin

from core.admin_base import TenantScopedAdmin
from history_app.models import Bookmark


@admin.register(Bookmark)
class BookmarkAdmin(TenantScopedAdmin):
    list_display = ["session", "message", "user", "organization", "created_at"]
    search_fields = ["note", "user__username"]
    raw_id_fields = ["session", "message", "user"]
