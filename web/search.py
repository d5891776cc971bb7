"""The sessions page's full-text search, on the history app's index (PostgreSQL tsvector or SQLite FTS5)."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.safestring import mark_safe

from core.errors import SwitchboardError
from history_app.search.backends import search_messages
from history_app.search.query import parse_query
from web import selectors

HITS_PER_PAGE = 20
MAX_PAGE = 10_000


def search_page(request: HttpRequest, filters: dict[str, str]) -> dict:
    """One page of hits for ``filters["q"]`` within the sessions the other filters leave, or the error
    that explains why the query was not accepted."""
    try:
        query = parse_query(filters["q"])
    except SwitchboardError as error:
        return {"error": error, "hits": []}
    try:  # bounded: a page past the last is empty, and a huge one would overflow the database's offset
        page = min(max(1, int(request.GET.get("page", 1))), MAX_PAGE)
    except ValueError:
        page = 1
    narrowed = any(filters[key] for key in ("status", "agent", "tag"))
    sessions = (
        selectors.session_list(status=filters["status"], agent=filters["agent"], tag=filters["tag"])
        if narrowed
        else None
    )
    result = search_messages(
        query,
        organization=request.organization,
        sessions=sessions,
        limit=HITS_PER_PAGE,
        offset=(page - 1) * HITS_PER_PAGE,
    )
    hits = [
        {"hit": hit, "snippet": mark_safe(hit.snippet)}  # escaped by the backend; only <mark> is markup
        for hit in result.hits
    ]
    return {
        "hits": hits,
        "page": page,
        "has_previous": page > 1,
        "has_next": result.has_more,
        "approximate": getattr(result, "approximate", False),
    }
