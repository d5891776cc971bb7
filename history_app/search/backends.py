"""Running a parsed query against the database's own full-text index.

PostgreSQL ranks with ``ts_rank_cd`` and highlights with ``ts_headline``; SQLite ranks with FTS5's
``bm25`` and highlights with ``snippet``. Both filter on ``organization_id`` in SQL, so another
organization's text never leaves the database, and order by rank with a stable tie-break (newest first,
then id) so offset pages neither repeat nor skip rows.

Ranking needs every candidate row's indexed text, so its cost grows with the number of matches: a word
found in half a million messages would take a second to rank. The rank is therefore computed over at
most ``SEARCH_RANK_CANDIDATES`` matches (the first the index yields). A query with more matches than
that is broad enough that the user will narrow it; its page says ``approximate`` so the UI can say so.
Up to that many matches (any specific query) the order is exact.
"""

from __future__ import annotations

import html
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connections, models
from django.utils.dateparse import parse_datetime

from history_app.search import schema
from history_app.search.query import SearchQuery, render_fts5, render_tsquery
from sessions_app.models import Message

# Highlight markers the database puts around matches; the snippet is HTML-escaped afterwards and the
# markers become <mark> tags, so message text can never inject markup into a results page.
START, STOP = "\x02", "\x03"
HEADLINE_OPTIONS = (
    f'StartSel="{START}", StopSel="{STOP}", MaxWords=30, MinWords=12, ShortWord=2, '
    'MaxFragments=2, FragmentDelimiter=" … "'
)
SNIPPET_TOKENS = 24


@dataclass(frozen=True)
class SearchHit:
    message_id: uuid.UUID
    session_id: uuid.UUID
    session_name: str
    role: str
    seq: int
    created_at: datetime
    rank: float
    snippet: str


@dataclass(frozen=True)
class SearchPage:
    hits: list[SearchHit]
    offset: int
    limit: int
    has_more: bool
    approximate: bool = False  # more matches than were ranked


def highlight(snippet: str) -> str:
    return html.escape(snippet or "").replace(START, "<mark>").replace(STOP, "</mark>")


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = parse_datetime(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _filters(organization_id: int, sessions: models.QuerySet | None, roles: list[str] | None):
    """WHERE conditions on the message table ``m`` and their params, shared by both backends."""
    where = ["m.organization_id = %s"]
    params: list[Any] = [organization_id]
    if roles:
        where.append("m.role IN (" + ", ".join(["%s"] * len(roles)) + ")")
        params += list(roles)
    if sessions is not None:
        sql, session_params = sessions.order_by().values("pk").query.sql_with_params()
        where.append(f"m.session_id IN ({sql})")
        params += list(session_params)
    return " AND ".join(where), params


def _postgres(cursor, query: SearchQuery, where: str, params: list, organization_id: int, page: tuple):
    tsquery = f"to_tsquery('{schema.PG_CONFIG}', %s)"
    text = render_tsquery(query)
    candidates, limit, offset = page
    # Innermost: the candidates, straight from the GIN index; then rank and page them; last, the session
    # names and headlines of the page's rows only.
    cursor.execute(
        f"""
        SELECT p.id, p.session_id, s.name, p.role, p.seq, p.created_at, p.rank, p.matches,
               ts_headline('{schema.PG_CONFIG}', m.content, {tsquery}, %s)
        FROM (
            SELECT c.id, c.session_id, c.role, c.seq, c.created_at,
                   ts_rank_cd(c.search_vector, {tsquery}) AS rank, count(*) OVER () AS matches
            FROM (
                SELECT m.id, m.session_id, m.role, m.seq, m.created_at, m.search_vector
                FROM {schema.MESSAGE_TABLE} m
                WHERE m.search_vector @@ {tsquery} AND {where}
                LIMIT %s
            ) c
            ORDER BY rank DESC, c.created_at DESC, c.id DESC
            LIMIT %s OFFSET %s
        ) p
        JOIN {schema.MESSAGE_TABLE} m ON m.id = p.id
        JOIN sessions_app_session s ON s.id = p.session_id AND s.organization_id = %s
        ORDER BY p.rank DESC, p.created_at DESC, p.id DESC
        """,
        [text, HEADLINE_OPTIONS, text, text, *params, candidates + 1, limit, offset, organization_id],
    )
    return cursor.fetchall()


def _sqlite(cursor, query: SearchQuery, where: str, params: list, organization_id: int, page: tuple):
    fts = schema.FTS_TABLE
    match = render_fts5(query)
    candidates, limit, offset = page
    cursor.execute(
        f"""
        SELECT m.id, m.session_id, s.name, m.role, m.seq, m.created_at, c.rank, c.matches, c.rid
        FROM (
            SELECT rid, rank, count(*) OVER () AS matches
            FROM (
                SELECT {fts}.rowid AS rid, -bm25({fts}) AS rank
                FROM {fts} JOIN {schema.MESSAGE_TABLE} m ON m.rowid = {fts}.rowid
                WHERE {fts} MATCH %s AND {where}
                LIMIT %s
            )
        ) c
        JOIN {schema.MESSAGE_TABLE} m ON m.rowid = c.rid
        JOIN sessions_app_session s ON s.id = m.session_id AND s.organization_id = %s
        ORDER BY c.rank DESC, m.created_at DESC, m.id DESC
        LIMIT %s OFFSET %s
        """,
        [match, *params, candidates + 1, organization_id, limit, offset],
    )
    rows = cursor.fetchall()
    if not rows:
        return rows
    # snippet() works only in the query that matches, so the page's snippets come in a second one.
    rowids = [row[8] for row in rows]
    cursor.execute(
        f"SELECT rowid, snippet({fts}, 0, %s, %s, ' … ', {SNIPPET_TOKENS}) FROM {fts} "
        f"WHERE {fts} MATCH %s AND rowid IN ({', '.join(['%s'] * len(rowids))})",
        [START, STOP, match, *rowids],
    )
    snippets = dict(cursor.fetchall())
    return [(*row[:8], snippets.get(row[8], "")) for row in rows]


def search_messages(
    query: SearchQuery,
    *,
    organization,
    sessions: models.QuerySet | None = None,
    roles: list[str] | None = None,
    limit: int = 20,
    offset: int = 0,
) -> SearchPage:
    """Messages of ``organization`` matching ``query``, best first (see the module docstring).

    ``sessions`` (a queryset of the organization's sessions) narrows the search to them; ``None`` means
    all of them, without the subquery. Messages that are still streaming are not in the index.
    """
    connection = connections[Message.objects.db]
    where, params = _filters(organization.pk, sessions, roles)
    run = _postgres if connection.vendor == "postgresql" else _sqlite
    page = (settings.SEARCH_RANK_CANDIDATES, limit + 1, offset)
    with connection.cursor() as cursor:
        rows = run(cursor, query, where, params, organization.pk, page)
    hits = [
        SearchHit(
            message_id=_uuid(row[0]),
            session_id=_uuid(row[1]),
            session_name=row[2] or "",
            role=row[3],
            seq=row[4],
            created_at=_datetime(row[5]),
            rank=float(row[6]),
            snippet=highlight(row[8]),
        )
        for row in rows[:limit]
    ]
    approximate = bool(rows) and rows[0][7] > settings.SEARCH_RANK_CANDIDATES
    return SearchPage(
        hits=hits, offset=offset, limit=limit, has_more=len(rows) > limit, approximate=approximate
    )
