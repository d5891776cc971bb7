"""Appending a streamed chunk: the reply's text and its ``stream.chunk`` event, written together (one
statement on PostgreSQL, a transaction elsewhere; both suites run this file)."""

from __future__ import annotations

import pytest

from core.tenancy import tenant_context
from sessions_app.models import Message, MessageRole, MessageStatus, Run, Session, SessionEvent
from sessions_app.services.messages import message_append, message_stream_append
from sessions_app.services.runs import run_create

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def live_pushes(monkeypatch):
    """What is pushed to channel groups, recorded instead of sent."""
    pushed: list[dict] = []
    monkeypatch.setattr("core.events.push_live", lambda group, message: pushed.append(message))
    return pushed


def streaming_reply(tenant) -> tuple[Message, Run]:
    with tenant_context(tenant.org):
        trigger = message_append(tenant.session, role=MessageRole.USER, content="Hi")
        run = run_create(tenant.session, trigger)
        reply = message_append(
            tenant.session, role=MessageRole.ASSISTANT, status=MessageStatus.STREAMING, run=run
        )
        return reply, run


def test_chunks_append_to_the_reply_and_take_the_next_seqs(world, live_pushes):
    reply, run = streaming_reply(world.a)
    session = world.a.session
    with tenant_context(world.a.org):
        before = Session.objects.get(pk=session.pk).last_event_seq
        message_stream_append(session, reply, "Hello, ", index=1, run=run)
        message_stream_append(session, reply, "world", index=2, run=run)
        stored = Message.objects.get(pk=reply.pk)
        chunks = list(SessionEvent.objects.filter(session=session, type="stream.chunk").order_by("seq"))
        assert Session.objects.get(pk=session.pk).last_event_seq == before + 2
    assert stored.content == reply.content == "Hello, world"
    assert [(c.seq, c.data, c.run_id) for c in chunks] == [
        (before + 1, {"message": str(reply.pk), "delta": "Hello, ", "index": 1}, run.pk),
        (before + 2, {"message": str(reply.pk), "delta": "world", "index": 2}, run.pk),
    ]
    assert session.last_event_seq == before + 2
    # Pushed live as stored: the envelope of each chunk is the log's.
    pushed = [e for push in live_pushes for e in push["events"] if e["type"] == "stream.chunk"]
    assert [(e["seq"], e["data"]["delta"], e["run"]) for e in pushed] == [
        (before + 1, "Hello, ", str(run.pk)),
        (before + 2, "world", str(run.pk)),
    ]


def test_a_chunk_never_reaches_another_organizations_message(world):
    """Given another organization's message (a bug upstream), the append writes nothing to it."""
    reply_b, _ = streaming_reply(world.b)
    reply_a, run_a = streaming_reply(world.a)
    with tenant_context(world.a.org):
        message_stream_append(world.a.session, reply_b, "leak", index=1, run=run_a)
    with tenant_context(world.b.org):
        assert Message.objects.get(pk=reply_b.pk).content == ""
        assert not SessionEvent.objects.filter(session=world.b.session, type="stream.chunk").exists()
    with tenant_context(world.a.org):
        assert Message.objects.get(pk=reply_a.pk).content == ""
