"""Messages: appending to a session's history with gap-free per-session numbering."""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from core.errors import ErrorCode, SwitchboardError
from core.events import Pending, event_publish, events_push_after_commit, session_counter_advance
from core.metrics import metrics
from sessions_app.models import (
    Message,
    MessageRole,
    MessageStatus,
    Run,
    Session,
    SessionEvent,
    SessionStatus,
)
from sessions_app.services.lifecycle import session_activate, session_check_usable, session_resume


def message_snapshot(message: Message) -> dict[str, Any]:
    """The message fields carried by message events."""
    return {
        "id": str(message.pk),
        "seq": message.seq,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "run": str(message.run_id) if message.run_id else None,
        "tool_call": str(message.tool_call_id) if message.tool_call_id else None,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "created_at": message.created_at.isoformat().replace("+00:00", "Z"),
    }


def validate_message_content(content: Any) -> str:
    """The content of a user message, or ``INVALID_MESSAGE`` / ``MESSAGE_TOO_LONG``."""
    if not isinstance(content, str):
        raise SwitchboardError(ErrorCode.INVALID_MESSAGE, "content must be a string.")
    if not content.strip():
        raise SwitchboardError(ErrorCode.INVALID_MESSAGE, "content must not be empty.")
    limit = settings.MESSAGE_MAX_CHARS
    if len(content) > limit:
        raise SwitchboardError(
            ErrorCode.MESSAGE_TOO_LONG,
            f"content is {len(content)} characters; the limit is {limit}.",
            {"length": len(content), "limit": limit},
        )
    return content


def message_append(
    session: Session,
    *,
    role: str,
    content: str = "",
    status: str = MessageStatus.COMPLETE,
    author=None,
    run=None,
    tool_call=None,
    metadata: dict[str, Any] | None = None,
    publish: bool = True,
) -> Message:
    """Append a message with the session's next message ``seq`` (row lock) and write ``message.created``
    (unless ``publish`` is false: the caller publishes it with other events)."""
    with transaction.atomic(savepoint=False):
        now = timezone.now()
        seq = session_counter_advance(session, "last_message_seq", touch=now)
        message = Message.objects.create(
            organization_id=session.organization_id,
            session_id=session.pk,
            seq=seq,
            role=role,
            content=content,
            status=status,
            author=author,
            run=run,
            tool_call=tool_call,
            metadata=metadata or {},
        )
        if publish:
            event_publish(session, "message.created", message_snapshot(message), run=run)
        transaction.on_commit(lambda: metrics.messages.labels(role=role).inc())
    session.last_message_seq = seq
    session.last_activity_at = now
    return message


def message_stream_append(session: Session, message: Message, delta: str, *, index: int, run: Run) -> None:
    """Append ``delta`` to a reply being streamed and publish its ``stream.chunk`` event, committed
    together, so that the reply's text and the event log always agree. Each chunk sends its delta, not the
    whole reply so far.

    On PostgreSQL this is one statement (the session's next event ``seq``, the message's text and the
    event row): a reply streams many chunks, and the three ORM statements in a transaction cost three
    times the round trips and query building, on the way to every chunk."""
    data = {"message": str(message.pk), "delta": delta, "index": index}
    if connection.vendor != "postgresql":
        with transaction.atomic(savepoint=False):
            Message.objects.filter(pk=message.pk).update(content=Concat(F("content"), Value(delta)))
            event_publish(session, "stream.chunk", data, run=run)
    else:
        event = SessionEvent(
            organization_id=session.organization_id,
            session_id=session.pk,
            type="stream.chunk",
            run=run,
            data=data,
            created_at=timezone.now(),
        )
        event.seq = _stream_append_statement(session, message, delta, event)
        session.last_event_seq = event.seq
        events_push_after_commit(session, [event])
    message.content += delta


@functools.cache
def _stream_append_sql() -> str:
    """The statement of :func:`_stream_append_statement`, built once per process: the same for every
    chunk. Every row it touches is matched on the session's organization too (it bypasses the
    tenant-scoped managers)."""
    q = connection.ops.quote_name
    sessions, messages, events = Session._meta, Message._meta, SessionEvent._meta

    def column(meta, name: str) -> str:
        return q(meta.get_field(name).column)

    seq, content = column(sessions, "last_event_seq"), column(messages, "content")
    inserted = ("organization", "session", "seq", "type", "run", "data", "created_at")
    return f"""
        WITH advanced AS (
            UPDATE {q(sessions.db_table)} SET {seq} = {seq} + 1
            WHERE {column(sessions, "id")} = %s AND {column(sessions, "organization")} = %s
            RETURNING {seq} AS seq
        ), appended AS (
            UPDATE {q(messages.db_table)} SET {content} = {content} || %s
            WHERE {column(messages, "id")} = %s AND {column(messages, "organization")} = %s
        )
        INSERT INTO {q(events.db_table)} ({", ".join(column(events, name) for name in inserted)})
        SELECT %s, %s, advanced.seq, %s, %s, %s, %s FROM advanced
        RETURNING {column(events, "seq")}"""


def _stream_append_statement(session: Session, message: Message, delta: str, event: SessionEvent) -> int:
    """:func:`message_stream_append` on PostgreSQL; returns the event's ``seq``."""

    def prep(model, name: str, value):
        return model._meta.get_field(name).get_db_prep_value(value, connection)

    session_id, org = prep(Session, "id", session.pk), session.organization_id
    params = [session_id, org, delta, prep(Message, "id", message.pk), org]
    params += [org, session_id, event.type, event.run_id, prep(SessionEvent, "data", event.data)]
    params.append(prep(SessionEvent, "created_at", event.created_at))
    with connection.cursor() as cursor:
        cursor.execute(_stream_append_sql(), params)
        row = cursor.fetchone()
    if row is None:
        raise Session.DoesNotExist(f"session {session.pk} not found")
    return row[0]


def message_post_user(
    session: Session,
    content: Any,
    *,
    author=None,
    run_options: dict | None = None,
    before_store=None,
    after_store=None,
) -> tuple[Message, Run]:
    """Store a user message and create the run that answers it.

    A session in ``created`` status is activated, a suspended one resumed. If a run is still active the
    session's ``on_busy`` policy applies first (``reject`` stores nothing). ``before_store`` (for example
    attachment validation) runs before anything is written, ``after_store(message)`` in the same
    transaction before the run is created. Takes the session's row lock.
    """
    from sessions_app.runtime.context import effective_config
    from sessions_app.services.runs import busy_policy_apply, run_create

    content = validate_message_content(content)
    session = session_check_usable(session)  # outside the transaction: an expiry it records must stay
    if before_store is not None:
        before_store()
    with transaction.atomic():
        locked = (
            Session.objects.select_for_update(of=("self",))
            .select_related("agent")  # the run's session: callers read its agent (transport, limits)
            .get(pk=session.pk)
        )
        session_check_usable(locked)  # ended (or expired) while waiting for the lock: nothing is stored
        # A statement of its own, after the lock: one waiting for the lock would see the runs as they were
        # when it began (PostgreSQL re-reads only the locked row), missing a run posted meanwhile.
        first = busy_policy_apply(locked, effective_config(locked)["on_busy"])
        if locked.status == SessionStatus.CREATED:
            locked = session_activate(locked)
        elif locked.status == SessionStatus.SUSPENDED:
            locked = session_resume(locked)
        message = message_append(locked, role=MessageRole.USER, content=content, author=author, publish=False)
        if after_store is not None:
            after_store(message)
        created = Pending("message.created", message_snapshot(message))
        run = run_create(locked, message, options=run_options, known_first=first, publish=[created])
    return message, run
