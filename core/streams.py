"""Delivery of a session's events to one client: the log first, then live, exactly once, in order.

:class:`EventFeed` starts after the last ``seq`` the client saw. It reads the durable log, then waits
for live pushes from the channel layer; a push that is not the next ``seq`` (a gap, or a push that
never came because the event was made by a process the in-memory layer cannot reach) sends it back to
the log. Duplicates (an event both read from the log and pushed) are dropped by ``seq``. The websocket
consumer and the SSE view both use it, so both transports behave the same.

Events no push announced are found by the :class:`LogWatcher` of the server's event loop: every
``EVENT_POLL_SECONDS`` it reads how far each watched session's log has got (one query per organization,
however many clients watch) and sends the feeds that are behind back to the log. One query per client
per poll made the cost of polling grow with the number of clients.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from core.tenancy import tenant_context

logger = logging.getLogger(__name__)

BATCH = 500
_NUDGE: dict[str, Any] = {"seq": -1}  # put in a feed's queue: "the log has more than you have"


class EventFeed:
    def __init__(self, organization, session_id, after: int = 0) -> None:
        self.organization = organization
        self.session_id = session_id
        self.last_seq = max(0, int(after))
        self.live: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._nudged = False

    def offer(self, envelope: dict[str, Any]) -> None:
        """Hand over a live push (called by the channel-layer handler)."""
        self.live.put_nowait(envelope)

    def nudge(self) -> None:
        """The log is ahead of this feed (called by the log watcher); once until the feed reads it."""
        if not self._nudged:
            self._nudged = True
            self.live.put_nowait(_NUDGE)

    @database_sync_to_async
    def _read_log(self, after: int) -> list[dict[str, Any]]:
        from core.events import event_envelope
        from sessions_app.models import SessionEvent

        with tenant_context(self.organization):
            rows = SessionEvent.objects.filter(session_id=self.session_id, seq__gt=after).order_by("seq")[
                :BATCH
            ]
            return [event_envelope(e) for e in rows]

    async def _catch_up(self) -> AsyncIterator[dict[str, Any]]:
        self._nudged = False
        while True:
            batch = await self._read_log(self.last_seq)
            for envelope in batch:
                if envelope["seq"] == self.last_seq + 1:
                    self.last_seq = envelope["seq"]
                    yield envelope
            if len(batch) < BATCH:
                return

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        async for envelope in self._catch_up():
            yield envelope
        watcher = LogWatcher.for_running_loop()
        watcher.add(self)
        try:
            while True:
                envelope = await self.live.get()
                if envelope is not _NUDGE and envelope["seq"] <= self.last_seq:
                    continue  # already delivered from the log
                if envelope is not _NUDGE and envelope["seq"] == self.last_seq + 1:
                    self.last_seq = envelope["seq"]
                    yield envelope
                    continue
                async for missed in self._catch_up():  # a gap, or the watcher saw more: the log has it
                    yield missed
        finally:
            watcher.discard(self)


class LogWatcher:
    """Per event loop: finds the feeds whose session's log moved past them, with one query per
    organization every ``EVENT_POLL_SECONDS``, and nudges them. Runs only while some feed is open."""

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LogWatcher] = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self.feeds: set[EventFeed] = set()
        self.task: asyncio.Task | None = None

    @classmethod
    def for_running_loop(cls) -> LogWatcher:
        loop = asyncio.get_running_loop()
        watcher = cls._by_loop.get(loop)
        if watcher is None:
            watcher = cls._by_loop[loop] = cls()
        return watcher

    def add(self, feed: EventFeed) -> None:
        self.feeds.add(feed)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(), name="event-log-watcher")

    def discard(self, feed: EventFeed) -> None:
        self.feeds.discard(feed)
        if not self.feeds and self.task is not None:
            self.task.cancel()
            self.task = None

    async def _run(self) -> None:
        while self.feeds:
            await asyncio.sleep(settings.EVENT_POLL_SECONDS)
            feeds = list(self.feeds)
            try:
                heads = await self._heads(feeds)
            except Exception:  # the database may be briefly unavailable: try again on the next tick
                logger.exception("reading the event log heads failed")
                continue
            for feed in feeds:
                if heads.get(feed.session_id, 0) > feed.last_seq:
                    feed.nudge()

    @staticmethod
    @database_sync_to_async
    def _heads(feeds: list[EventFeed]) -> dict[Any, int]:
        from sessions_app.models import Session

        by_org: dict[Any, tuple[Any, set]] = {}
        for feed in feeds:
            by_org.setdefault(feed.organization.pk, (feed.organization, set()))[1].add(feed.session_id)
        heads: dict[Any, int] = {}
        for organization, session_ids in by_org.values():
            with tenant_context(organization):
                rows = Session.objects.filter(pk__in=session_ids).values_list("pk", "last_event_seq")
                # Keyed as the feeds know their session: a UUID, or its text from the URL.
                for pk, seq in rows:
                    heads[pk] = heads[str(pk)] = seq
        return heads
