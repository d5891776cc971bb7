"""Delivery of a session's events to one client: the log first, then live, exactly once, in order.

:class:`EventFeed` starts after the last ``seq`` the client saw. It reads the durable log, then waits
for live pushes from the channel layer; a push that is not the next ``seq`` (a gap, or a push that
never came because the event was made by a process the in-memory layer cannot reach) sends it back to
the log. It also checks the log every ``EVENT_POLL_SECONDS`` when nothing arrives. Duplicates (an event
both read from the log and pushed) are dropped by ``seq``. The websocket consumer and the SSE view both
use it, so both transports behave the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from core.tenancy import tenant_context

BATCH = 500


class EventFeed:
    def __init__(self, organization, session_id, after: int = 0) -> None:
        self.organization = organization
        self.session_id = session_id
        self.last_seq = max(0, int(after))
        self.live: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def offer(self, envelope: dict[str, Any]) -> None:
        """Hand over a live push (called by the channel-layer handler)."""
        self.live.put_nowait(envelope)

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
        poll = settings.EVENT_POLL_SECONDS
        while True:
            try:
                envelope = await asyncio.wait_for(self.live.get(), timeout=poll)
            except TimeoutError:
                envelope = None
            if envelope is not None and envelope["seq"] <= self.last_seq:
                continue  # already delivered from the log
            if envelope is not None and envelope["seq"] == self.last_seq + 1:
                self.last_seq = envelope["seq"]
                yield envelope
                continue
            async for missed in self._catch_up():  # a gap, or nothing pushed: the log has the truth
                yield missed
