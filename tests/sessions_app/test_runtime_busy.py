"""A message that arrives while a run is active follows the session's ``on_busy`` policy."""

from __future__ import annotations

import threading

import pytest

from core.tenancy import tenant_context
from sessions_app.models import Message, MessageRole, Run, RunStatus, SessionEvent
from sessions_app.services.lifecycle import session_update
from sessions_app.services.runs import run_claim
from tests.support.assertions import assert_error
from tests.support.runtime import (
    BackgroundWorker,
    events,
    post,
    reload,
    run_now,
    task_queue_fixture,  # noqa: F401
    wait_until,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("task_queue")]


def set_on_busy(tenant, policy: str) -> None:
    with tenant_context(tenant.org):
        session_update(tenant.session, config={"on_busy": policy})


def counts(tenant) -> tuple[int, int, int]:
    with tenant_context(tenant.org):
        session = tenant.session
        return (
            Message.objects.filter(session=session).count(),
            Run.objects.filter(session=session).count(),
            SessionEvent.objects.filter(session=session).count(),
        )


def test_reject_answers_409_and_stores_nothing(world, client_for):
    set_on_busy(world.a, "reject")
    url = world.a.url(f"sessions/{world.a.session.pk}/messages/")
    client = client_for(world.a.member)
    assert client.post(url, {"content": "first"}, format="json").status_code == 201
    before = counts(world.a)
    error = assert_error(client.post(url, {"content": "second"}, format="json"), 409, "SESSION_BUSY")
    assert error["details"]["on_busy"] == "reject"
    assert len(error["details"]["active_runs"]) == 1
    assert counts(world.a) == before


def test_reject_accepts_the_next_message_once_the_run_is_done(world, llm, use_llm, client_for):
    use_llm(world.a)
    set_on_busy(world.a, "reject")
    _, run = post(world.a, "first")
    assert run_now(world.a, run).status == RunStatus.COMPLETED
    r = client_for(world.a.member).post(
        world.a.url(f"sessions/{world.a.session.pk}/messages/"), {"content": "second"}, format="json"
    )
    assert r.status_code == 201, r.content


def test_enqueue_is_the_default_and_runs_one_after_the_other(world, llm, use_llm, task_queue):
    use_llm(world.a)
    llm.script.reply("Answer one.").reply("Answer two.")
    _, first = post(world.a, "Question one")
    _, second = post(world.a, "Question two")
    assert task_queue.run_ids() == [str(first.pk)]  # the second waits for its turn

    with tenant_context(world.a.org):
        assert run_claim(second.pk, "eager-worker") is None  # not claimable while the first is active
    assert reload(world.a, second).status == RunStatus.QUEUED

    assert run_now(world.a, first).status == RunStatus.COMPLETED
    assert task_queue.run_ids() == [str(first.pk), str(second.pk)]  # dispatched when the first finished
    assert run_now(world.a, second).status == RunStatus.COMPLETED

    # Each run answers its own message: the first does not see the second question yet, and the second
    # sees the conversation in the order it happened.
    first_request, second_request = (r.body["messages"] for r in llm.chat_requests)
    assert [m["content"] for m in first_request[1:]] == ["Question one"]
    assert [m["content"] for m in second_request[1:]] == ["Question one", "Answer one.", "Question two"]
    with tenant_context(world.a.org):
        replies = Message.objects.filter(role=MessageRole.ASSISTANT).order_by("seq")
        assert [(m.run_id, m.content) for m in replies] == [
            (first.pk, "Answer one."),
            (second.pk, "Answer two."),
        ]


def test_interrupt_cancels_the_streaming_run_and_the_new_one_proceeds(world, llm, use_llm, task_queue):
    use_llm(world.a)
    set_on_busy(world.a, "interrupt")
    llm.script.reply(" ".join(f"w{i}" for i in range(300)), delay=0.05).reply("Switching topics.")
    _, first = post(world.a, "Tell me a long story")
    worker = BackgroundWorker(world.a, first)
    worker.start()
    wait_until(lambda: events(world.a, types=("stream.chunk",), run=first), what="the first chunk")

    _, second = post(world.a, "Actually, stop")
    assert reload(world.a, first).cancel_requested_at is not None
    worker.finish(timeout=10)
    assert reload(world.a, first).status == RunStatus.CANCELLED
    assert str(second.pk) in task_queue.run_ids()
    assert run_now(world.a, second).status == RunStatus.COMPLETED
    last = llm.chat_requests[-1].body["messages"]
    assert [m["role"] for m in last[1:]] == ["user", "assistant", "user"]
    assert last[-1]["content"] == "Actually, stop"


def test_interrupt_cancels_a_queued_run_at_once(world, task_queue):
    set_on_busy(world.a, "interrupt")
    _, first = post(world.a, "first")
    _, second = post(world.a, "second")
    assert reload(world.a, first).status == RunStatus.CANCELLED
    assert reload(world.a, second).status == RunStatus.QUEUED
    assert task_queue.run_ids() == [str(first.pk), str(second.pk)]


def test_on_busy_must_be_a_known_policy(world, client_for):
    r = client_for(world.a.member).patch(
        world.a.url(f"sessions/{world.a.session.pk}/"), {"config": {"on_busy": "panic"}}, format="json"
    )
    assert_error(r, 400, "VALIDATION_ERROR")


def test_a_message_that_waited_for_the_session_lock_sees_the_run_posted_meanwhile(world):
    """Two messages at once: the second waits for the first's transaction, then finds its run active.

    (A busy check in the same statement as the lock would see the runs as they were when the statement
    began on PostgreSQL, and accept the second message under ``reject``.)"""
    from django.db import connection, transaction

    from core.errors import ErrorCode, SwitchboardError
    from sessions_app.services.messages import message_post_user

    set_on_busy(world.a, "reject")
    first_posted, release, outcome = threading.Event(), threading.Event(), {}

    def first() -> None:
        try:
            with tenant_context(world.a.org), transaction.atomic():
                message_post_user(world.a.session, "first", author=world.a.member)
                first_posted.set()
                release.wait(10)
        finally:
            connection.close()

    def second() -> None:
        try:
            with tenant_context(world.a.org):
                message_post_user(world.a.session, "second", author=world.a.member)
            outcome["accepted"] = True
        except SwitchboardError as error:
            outcome["error"] = error.code
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert first_posted.wait(10)
    threads[1].start()
    if connection.vendor == "postgresql":  # the second is waiting for the session's row lock
        wait_until(lambda: _lock_waiters() > 0, 10, "the second message waits for the lock")
    release.set()
    for thread in threads:
        thread.join(15)
    assert outcome == {"error": ErrorCode.SESSION_BUSY}
    assert counts(world.a)[:2] == (1, 1)


def _lock_waiters() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
        return cursor.fetchone()[0]
