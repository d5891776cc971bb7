"""Ending a session stops its runs, and an expired session refuses every change with SESSION_EXPIRED."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.errors import SwitchboardError
from core.tenancy import tenant_context
from sessions_app.models import (
    EndedReason,
    Message,
    MessageRole,
    MessageStatus,
    Run,
    RunStatus,
    RuntimeState,
    Session,
    SessionStatus,
)
from sessions_app.services.cleanup import sessions_cleanup
from sessions_app.services.lifecycle import session_end
from sessions_app.services.messages import message_post_user
from tests.support.assertions import assert_error
from tests.support.runtime import (
    BackgroundWorker,
    event_types,
    events,
    post,
    reload,
    run_now,
    task_queue_fixture,  # noqa: F401
    wait_until,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("task_queue")]


def end(tenant, reason=EndedReason.USER) -> Session:
    with tenant_context(tenant.org):
        return session_end(Session.objects.get(pk=tenant.session.pk), reason)


def test_ending_a_session_cancels_its_queued_run(world, llm, use_llm):
    use_llm(world.a)
    _, run = post(world.a)
    end(world.a)
    run = reload(world.a, run)
    assert run.status == RunStatus.CANCELLED
    types = event_types(world.a)
    assert types.index("run.cancelled") > types.index("session.ended")
    assert reload(world.a, world.a.session).runtime_state == RuntimeState.IDLE
    # Its task, arriving late, finds nothing to do: no model call, no reply.
    requests = len(llm.chat_requests)
    assert run_now(world.a, run).status == RunStatus.CANCELLED
    assert len(llm.chat_requests) == requests
    with tenant_context(world.a.org):
        assert not Message.objects.filter(role=MessageRole.ASSISTANT).exists()


def test_ending_a_session_stops_its_streaming_run_and_keeps_the_partial_reply(world, llm, use_llm):
    use_llm(world.a)
    reply = " ".join(f"word{i}" for i in range(400))
    llm.script.reply(reply, delay=0.05)
    _, run = post(world.a)
    worker = BackgroundWorker(world.a, run)
    worker.start()
    wait_until(lambda: events(world.a, types=("stream.chunk",), run=run), what="the first chunk")
    end(world.a)
    worker.finish(timeout=10)
    run = reload(world.a, run)
    assert run.status == RunStatus.CANCELLED
    with tenant_context(world.a.org):
        message = Message.objects.get(run=run, role=MessageRole.ASSISTANT)
    assert message.status == MessageStatus.CANCELLED
    assert message.content and reply.startswith(message.content) and message.content != reply
    assert reload(world.a, world.a.session).status == SessionStatus.ENDED


def test_expiry_by_the_cleanup_cancels_the_sessions_runs(world, llm, use_llm):
    use_llm(world.a)
    _, run = post(world.a)
    with tenant_context(world.a.org):
        Session.objects.filter(pk=world.a.session.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert sessions_cleanup()["expired"] == 1
    session = reload(world.a, world.a.session)
    assert (session.status, session.ended_reason) == (SessionStatus.ENDED, EndedReason.EXPIRED)
    assert reload(world.a, run).status == RunStatus.CANCELLED


def test_a_message_for_a_session_ended_meanwhile_is_refused_and_nothing_is_stored(world):
    with tenant_context(world.a.org):
        stale = Session.objects.get(pk=world.a.session.pk)  # read before another request ends it
    end(world.a)
    with tenant_context(world.a.org), pytest.raises(SwitchboardError) as refused:
        message_post_user(stale, "Hello?", author=world.a.member)
    assert refused.value.code.value == "INVALID_STATE"
    with tenant_context(world.a.org):
        assert not Message.objects.exists() and not Run.objects.exists()


@pytest.mark.parametrize("already_ended", [True, False], ids=["ended-by-cleanup", "past-expiry"])
@pytest.mark.parametrize(
    "method, path, body",
    [
        ("post", "activate/", None),
        ("post", "suspend/", None),
        ("post", "resume/", None),
        ("patch", "", {"name": "renamed"}),
        ("post", "messages/", {"content": "still there?"}),
    ],
)
def test_an_expired_session_refuses_every_change(world, client_for, already_ended, method, path, body):
    with tenant_context(world.a.org):
        Session.objects.filter(pk=world.a.session.pk).update(
            status=SessionStatus.ACTIVE, expires_at=timezone.now() - timedelta(seconds=1)
        )
    if already_ended:
        sessions_cleanup()
    url = world.a.url(f"sessions/{world.a.session.pk}/{path}")
    response = getattr(client_for(world.a.member), method)(url, body, format="json")
    assert_error(response, 410, "SESSION_EXPIRED")
    session = reload(world.a, world.a.session)
    assert (session.status, session.ended_reason) == (SessionStatus.ENDED, EndedReason.EXPIRED)
    assert session.name != "renamed"
