"""The viewer's own bookmarks: list, jump to, remove."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from core.errors import ErrorCode, not_found
from history_app.models import Bookmark
from history_app.services import bookmark_delete
from web.access import org_view
from web.selectors import parse_uuid


@require_GET
@org_view()
def bookmark_list(request: HttpRequest) -> HttpResponse:
    rows = (
        Bookmark.objects.filter(user=request.user)
        .select_related("session", "message")
        .order_by("-created_at")
    )
    page = Paginator(rows, 50).get_page(request.GET.get("page"))
    return render(request, "web/bookmarks.html", {"nav": "bookmarks", "page": page})


@require_POST
@org_view()
def bookmark_remove(request: HttpRequest, bookmark_id) -> HttpResponse:
    pk = parse_uuid(bookmark_id)
    bookmark = Bookmark.objects.filter(pk=pk, user=request.user).first() if pk else None
    if bookmark is None:
        raise not_found(ErrorCode.BOOKMARK_NOT_FOUND, "Bookmark")
    bookmark_delete(bookmark)
    if request.htmx:
        return HttpResponse("")
    messages.success(request, "Bookmark removed.")
    return redirect("web:bookmarks", request.organization.slug)
