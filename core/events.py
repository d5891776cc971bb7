"""The event publisher (DESIGN.md, principle 2): durable first, live second.

Every observable change of a session is appended to its ``SessionEvent`` log with the next ``seq``
under the session's row lock, and pushed to the session's channel group only after the transaction
commits. Clients that miss a live push (another process on an in-memory channel layer, a reconnect, a
week away) read the same events back from the log; the ``seq`` makes that exactly-once. The types and
their ``data`` are documented in ``docs/events.md``.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import queue
import threading
from typing import TYPE_CHECKING, Any, NamedTuple

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import get_channel_layer
from django.db import connection, transaction
from django.utils import timezone

if TYPE_CHECKING:
    from sessions_app.models import Run, Session, SessionEvent

logger = logging.getLogger(__name__)

EVENT_TYPES = frozenset(
    {
        "session.created",
        "session.activated",
        "session.suspended",
        "session.ended",
        "session.updated",
        "message.created",
        "message.updated",
        "tool_call.pending",
        "tool_call.approved",
        "tool_call.rejected",
        "tool_call.completed",
        "tool_call.failed",
        "stream.started",
        "stream.chunk",
        "stream.ended",
        "error.occurred",
        "run.queued",
        "run.started",
        "run.requires_action",
        "run.completed",
        "run.failed",
        "run.cancelled",
        "worker.spawned",
        "worker.completed",
        "worker.failed",
        "worker.stalled",
    }
)


def session_group(session_id) -> str:
    """The channel group of one session; built on the server only, never from client input."""
    return f"session-{getattr(session_id, 'hex', str(session_id).replace('-', ''))}"


def org_approvals_group(organization_id: int) -> str:
    return f"org-{int(organization_id)}-approvals"


def event_envelope(event: SessionEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "type": event.type,
        "session": str(event.session_id),
        "run": str(event.run_id) if event.run_id else None,
        "ts": event.created_at.isoformat().replace("+00:00", "Z"),
        "data": event.data,
    }


class Pending(NamedTuple):
    """An event to publish with :func:`events_publish`."""

    type: str
    data: dict[str, Any] | None = None
    run: Run | None = None


def event_publish(session: Session, type: str, data: dict[str, Any] | None = None, *, run: Run | None = None):
    """Append an event to ``session``'s log and push it live after commit.

    Takes the session's row lock (inside its own or the caller's transaction) to hand out the next
    ``seq``; updates ``session.last_event_seq`` in memory too.
    """
    return events_publish(session, [Pending(type, data, run)])[0]


def events_publish(session: Session, events: list[Pending]) -> list[SessionEvent]:
    """Append several events at once: one ``UPDATE`` hands out their ``seq`` numbers, one ``INSERT``
    stores them, and they are pushed in order after commit. What a step of a run changes together
    (a claim, the start of a reply) is published together, with a single write."""
    from sessions_app.models import SessionEvent

    for pending in events:
        if pending.type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {pending.type!r}")
    # No savepoint: a failure here fails the caller's transaction anyway, and streaming publishes often.
    with transaction.atomic(savepoint=False):
        last = session_counter_advance(session, "last_event_seq", len(events))
        now = timezone.now()
        rows = SessionEvent.objects.bulk_create(
            SessionEvent(
                organization_id=session.organization_id,
                session_id=session.pk,
                seq=last - len(events) + 1 + i,
                type=pending.type,
                run=pending.run,
                data=pending.data or {},
                created_at=now,
            )
            for i, pending in enumerate(events)
        )
        events_push_after_commit(session, rows)
    session.last_event_seq = last
    return rows


def events_push_after_commit(session: Session, rows: list[SessionEvent]) -> None:
    """Push events just written to the log to the session's group once the transaction commits."""
    envelopes = [event_envelope(row) for row in rows]
    group = session_group(session.pk)
    transaction.on_commit(lambda: push_live(group, {"type": "session.events", "events": envelopes}))


def session_counter_advance(session: Session, field: str, count: int = 1, *, touch=None) -> int:
    """Add ``count`` to one of the session's counters (``last_event_seq``, ``last_message_seq``) and
    return its new value, also setting ``last_activity_at`` to ``touch`` if given: one
    ``UPDATE … RETURNING`` that takes the row lock, where the ORM needs a locked read and a write."""
    from sessions_app.models import Session

    meta, quote = Session._meta, connection.ops.quote_name
    column = quote(meta.get_field(field).column)
    assignments, params = [f"{column} = {column} + %s"], [count]
    if touch is not None:
        activity = meta.get_field("last_activity_at")
        assignments.append(f"{quote(activity.column)} = %s")
        params.append(activity.get_db_prep_value(touch, connection))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(meta.db_table)} SET {', '.join(assignments)} "
            f"WHERE {quote(meta.pk.column)} = %s AND {quote(meta.get_field('organization').column)} = %s "
            f"RETURNING {column}",
            [*params, meta.pk.get_db_prep_value(session.pk, connection), session.organization_id],
        )
        row = cursor.fetchone()
    if row is None:
        raise Session.DoesNotExist(f"session {session.pk} not found")
    return row[0]


def push_live(group: str, message: dict[str, Any]) -> None:
    """Send a message to a channel group. A failure is logged: the event log still has it.

    A session's group gets ``{"type": "session.events", "events": [envelope, ...]}``: the events one
    transaction published, in ``seq`` order.

    In a thread an ASGI server runs sync code on, the send goes through the server's own event loop
    (the in-memory layer is only safe there). Anywhere else (queue workers, commands) it is handed to
    this process's :class:`LivePusher`, which sends in order without blocking the caller.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    if _server_loop() is None:
        LivePusher.instance().submit(layer, group, message)
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # the live push is best effort; the durable log is the source of truth
        logger.exception("live push to %s failed", group)


def _server_loop() -> asyncio.AbstractEventLoop | None:
    """The running event loop whose sync_to_async thread this is (what async_to_sync would use)."""
    loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    if loop is None or not loop.is_running():
        return None
    if getattr(SyncToAsync.threadlocal, "main_event_loop_pid", None) != os.getpid():
        return None
    return loop


class LivePusher:
    """One event loop thread per process that sends live pushes in the order they were made.

    ``async_to_sync`` from a plain thread starts a new event loop per call, and channels-redis keeps its
    connections per loop: every event paid for a new Redis connection (about 10 ms). Here the loop, and
    so the connection, lives as long as the process. The caller does not wait; pushes still queued when
    the process dies are lost, which the event log covers (clients read it back).
    """

    _instance: LivePusher | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.pending = 0
        self.idle = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="live-pusher", daemon=True)
        self.thread.start()

    @classmethod
    def instance(cls) -> LivePusher:
        with cls._lock:
            # A forked queue worker inherits the parent's object but not its thread: start its own.
            if cls._instance is None or cls._instance.pid != os.getpid():
                cls._instance = cls()
                atexit.register(cls._instance.flush)
            return cls._instance

    def submit(self, layer, group: str, message: dict[str, Any]) -> None:
        with self.idle:
            self.pending += 1
        self.queue.put((layer, group, message))

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until every submitted push was sent (or failed); False if ``timeout`` passed first."""
        with self.idle:
            return self.idle.wait_for(lambda: self.pending == 0, timeout)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        while True:
            layer, group, message = self.queue.get()
            try:
                loop.run_until_complete(layer.group_send(group, message))
            except Exception:  # best effort, as above
                logger.exception("live push to %s failed", group)
            finally:
                with self.idle:
                    self.pending -= 1
                    self.idle.notify_all()
