"""Reads behind the web pages. Every function runs inside the page's tenant context (see ``web.access``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from django.db import connection, models, transaction

from core.access import Access
from core.models import Role
from sessions_app.models import (
    RUN_ACTIVE_STATUSES,
    Agent,
    Message,
    MessageRole,
    Run,
    Session,
    SessionStatus,
)
from sessions_app.selectors import visible_tags, visible_templates
from tools_app.models import ToolCall, ToolCallStatus

CHAT_PAGE_MESSAGES = 200
# A link to an older message (a search hit, a bookmark) loads every message after it, in pages of at most
# this many, with a few before it for context.
CHAT_JUMP_MESSAGES = 2000
CHAT_JUMP_CONTEXT = 3


def session_list(*, status: str = "", agent: str = "", tag: str = "", name: str = "") -> models.QuerySet:
    """Sessions of the organization, newest first, narrowed by the list page's filters."""
    qs = Session.objects.select_related("agent", "owner").prefetch_related("tags").order_by("-created_at")
    if status in SessionStatus.values:
        qs = qs.filter(status=status)
    if agent:
        try:
            qs = qs.filter(agent_id=uuid.UUID(agent))
        except ValueError:
            qs = qs.filter(agent__slug=agent)
    if tag:
        qs = qs.filter(tags__name=tag).distinct()
    if name:
        qs = qs.filter(name__icontains=name)
    return qs


def filter_choices() -> dict:
    return {
        "statuses": SessionStatus.choices,
        "agents": list(Agent.objects.order_by("name")),
        "tags": list(visible_tags().order_by("name")),
    }


def new_session_choices() -> dict:
    return {
        "agents": list(Agent.objects.filter(is_active=True).order_by("name")),
        "templates": list(visible_templates().select_related("agent").order_by("name")),
        "tags": list(visible_tags().order_by("name")),
    }


def parse_uuid(value) -> uuid.UUID | None:
    """An id from a URL or a form, or None when it is not one (then the page answers not found)."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def get_session(session_id) -> Session | None:
    pk = parse_uuid(session_id)
    if pk is None:
        return None
    return Session.objects.select_related("agent", "owner", "template").filter(pk=pk).first()


def tool_calls_shown() -> models.QuerySet:
    """Tool calls as their cards show them. A tool's result is shown on its call's card, not as a message
    of its own, so each call brings the id of its result's message, which the card carries as an anchor:
    a search hit or a bookmark on the result opens the chat at the card."""
    results = Message.objects.filter(tool_call=models.OuterRef("pk"), role=MessageRole.TOOL).values("pk")
    return ToolCall.objects.annotate(result_message_id=models.Subquery(results[:1]))


def _messages_queryset(session: Session) -> models.QuerySet:
    return (
        Message.objects.filter(session=session)
        .exclude(role=MessageRole.TOOL)
        .select_related("run", "author")
        .prefetch_related("attachments", models.Prefetch("tool_calls", queryset=tool_calls_shown()))
    )


@dataclass
class ChatSnapshot:
    session: Session
    messages: list[Message]
    loose_tool_calls: list[ToolCall]
    active_runs: list[str]
    last_event_seq: int
    has_earlier: bool
    tags: list = field(default_factory=list)


def _snapshot_isolation() -> None:
    """Make the reads of this transaction one snapshot. PostgreSQL needs REPEATABLE READ for that; SQLite's
    transactions are snapshots already. Only possible as the transaction's first statement."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")


def chat_snapshot(session_id) -> ChatSnapshot | None:
    """The chat page's data, read in one snapshot: the messages rendered and ``last_event_seq`` agree, so
    the page's stream resumes exactly after the text it shows (no chunk lost or shown twice)."""
    outer = connection.in_atomic_block
    with transaction.atomic():
        if not outer:
            _snapshot_isolation()
        session = get_session(session_id)
        if session is None:
            return None
        recent = list(_messages_queryset(session).order_by("-seq")[: CHAT_PAGE_MESSAGES + 1])
        has_earlier = len(recent) > CHAT_PAGE_MESSAGES
        messages = list(reversed(recent[:CHAT_PAGE_MESSAGES]))
        loose = list(tool_calls_shown().filter(session=session, message__isnull=True).order_by("created_at"))
        active = [
            str(pk)
            for pk in Run.objects.filter(session=session, status__in=RUN_ACTIVE_STATUSES).values_list(
                "pk", flat=True
            )
        ]
        tags = list(session.tags.order_by("name"))
    return ChatSnapshot(
        session=session,
        messages=messages,
        loose_tool_calls=loose,
        active_runs=active,
        last_event_seq=session.last_event_seq,
        has_earlier=has_earlier,
        tags=tags,
    )


def messages_before(
    session: Session, before_seq: int, *, through_seq: int | None = None
) -> tuple[list[Message], bool]:
    """An earlier page of the chat, oldest first, and whether there is more before it. ``through_seq``:
    the page reaches back to that message (and a few before it), up to ``CHAT_JUMP_MESSAGES``."""
    earlier = _messages_queryset(session).filter(seq__lt=before_seq)
    size = CHAT_PAGE_MESSAGES
    if through_seq is not None:
        between = earlier.filter(seq__gte=through_seq).count()
        size = min(max(size, between + CHAT_JUMP_CONTEXT), CHAT_JUMP_MESSAGES)
    rows = list(earlier.order_by("-seq")[: size + 1])
    return list(reversed(rows[:size])), len(rows) > size


def jump_seq(session: Session, anchor: str) -> int | None:
    """Where the chat must reach back to to show ``anchor``, the id of a message's element (``m-<id>``)
    or of a tool call's card (``tc-<id>``) in ``session``: the message's seq; for a card, or for a tool's
    result (shown on its call's card), the seq of the reply that asked for the call. None if the session
    has no such message or call, or if it shows on every page (a direct task and its result)."""
    kind, _, value = anchor.partition("-")
    pk = parse_uuid(value)
    if pk is None or kind not in ("m", "tc"):
        return None
    if kind == "tc":
        return ToolCall.objects.filter(session=session, pk=pk).values_list("message__seq", flat=True).first()
    row = (
        Message.objects.filter(session=session, pk=pk)
        .values_list("role", "seq", "tool_call__message__seq")
        .first()
    )
    if row is None:
        return None
    role, seq, asking_seq = row
    return asking_seq if role == MessageRole.TOOL else seq


def active_runs(session: Session) -> list[Run]:
    return list(Run.objects.filter(session=session, status__in=RUN_ACTIVE_STATUSES))


def message_in_session(session: Session, message_id) -> Message | None:
    pk = parse_uuid(message_id)
    return _messages_queryset(session).filter(pk=pk).first() if pk else None


def tool_call_by_id(call_id) -> ToolCall | None:
    pk = parse_uuid(call_id)
    if pk is None:
        return None
    return tool_calls_shown().select_related("session", "session__agent", "decided_by").filter(pk=pk).first()


def pending_approvals() -> list[ToolCall]:
    """Every tool call of the organization waiting for a person, oldest first."""
    return list(
        ToolCall.objects.filter(status=ToolCallStatus.PENDING, requires_approval=True)
        .select_related("session", "session__agent", "session__owner")
        .order_by("created_at")
    )


def may_decide(access: Access, session: Session) -> bool:
    """Mirror of ``tools_app.services.tool_calls.check_may_decide`` to show or hide the buttons."""
    if not access.may_approve():
        return False
    return access.has_role(Role.ADMIN) or (access.user_id is not None and session.owner_id == access.user_id)


def may_write(access: Access, session: Session) -> bool:
    """Mirror of ``sessions_app.api.views.check_session_write`` to show or hide the controls."""
    if access.has_role(Role.ADMIN):
        return True
    return access.has_role(Role.MEMBER) and access.user_id is not None and session.owner_id == access.user_id


APPROVAL_WAIT_BUCKETS = [
    (10, "under 10 s"),
    (60, "10 s – 1 min"),
    (300, "1 – 5 min"),
    (1800, "5 – 30 min"),
    (7200, "30 min – 2 h"),
    (None, "over 2 h"),
]


def approval_wait_histogram(since, until) -> list[tuple[str, int]]:
    """How long people took to decide the tool calls that waited for them, in buckets."""
    decided = ToolCall.objects.filter(
        requires_approval=True, decided_at__isnull=False, created_at__gte=since, created_at__lt=until
    ).values_list("created_at", "decided_at")
    counts = [0] * len(APPROVAL_WAIT_BUCKETS)
    for created, decided_at in decided:
        seconds = (decided_at - created).total_seconds()
        index = next(
            i for i, (limit, _) in enumerate(APPROVAL_WAIT_BUCKETS) if limit is None or seconds < limit
        )
        counts[index] += 1
    return [(label, counts[i]) for i, (_, label) in enumerate(APPROVAL_WAIT_BUCKETS)]
