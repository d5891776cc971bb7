"""A run's first model call goes out before the claim, and the claim stores the reply's message with it.

The claim's writes then overlap the model's time to first token. The claim still decides: a run it does
not take (a cancel meanwhile, an earlier run still active) stores nothing and closes the call.
"""

from __future__ import annotations

import pytest

from core.tenancy import tenant_context
from sessions_app.models import Message, MessageRole, Run, RunStatus, SessionEvent
from sessions_app.runtime import executor
from sessions_app.runtime.executor import run_execute
from sessions_app.services import runs
from sessions_app.services.messages import message_post_user

pytestmark = pytest.mark.django_db(transaction=True)


def events_after(tenant, event_type: str) -> list[SessionEvent]:
    with tenant_context(tenant.org):
        rows = list(SessionEvent.objects.filter(session=tenant.session).order_by("seq"))
    start = max(i for i, e in enumerate(rows) if e.type == event_type)
    return rows[start + 1 :]


@pytest.fixture
def calls(monkeypatch):
    """Every model call the executor prepares."""
    made = []
    original = executor.model_call

    def record(*args, **kwargs):
        made.append(original(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(executor, "model_call", record)
    return made


def test_the_request_goes_out_before_the_claim_which_opens_the_reply(
    world, llm, use_llm, calls, monkeypatch
):
    use_llm(world.a)
    llm.script.reply("Early and whole.")
    run_claim, sent_at_claim = runs.run_claim, []

    def observed_claim(*args, **kwargs):  # what the claim finds when it starts
        sent_at_claim.append([call.stream.sent.is_set() for call in calls])
        return run_claim(*args, **kwargs)

    monkeypatch.setattr(runs, "run_claim", observed_claim)
    with tenant_context(world.a.org):
        _, run = message_post_user(world.a.session, "Hello", author=world.a.member)
        run_execute(str(run.pk))
        run = Run.objects.get(pk=run.pk)
        reply = Message.objects.get(run=run, role=MessageRole.ASSISTANT)
    assert run.status == RunStatus.COMPLETED
    assert reply.content == "Early and whole."
    assert len(calls) == 1  # one call, the early one: the run did not make another after its claim

    claim = events_after(world.a, "run.queued")[:5]
    assert [e.type for e in claim] == [
        "worker.spawned",
        "run.started",
        "message.created",
        "stream.started",
        "session.updated",
    ]
    assert claim[2].data["id"] == str(reply.pk)
    # Straight to streaming: the claim has no separate "processing" step before the reply.
    assert claim[4].data["runtime_state"] == "streaming"
    states = [
        e.data["runtime_state"] for e in events_after(world.a, "run.queued") if e.type == "session.updated"
    ]
    assert states == ["streaming", "idle"]
    # The request had gone out (the HTTP client's request hook) when the claim started. (When the model
    # server's thread records it is its own affair: on a loaded machine, after the claim has begun.)
    assert sent_at_claim == [[True]]
    assert len(llm.chat_requests) == 1


def test_a_run_cancelled_before_its_claim_closes_its_early_call(world, llm, use_llm, calls, monkeypatch):
    use_llm(world.a)
    llm.script.reply("never read " * 50, delay=0.05)
    claim = runs.run_claim

    def cancel_then_claim(run_id, *args, **kwargs):  # the user cancels while the request is on its way
        with tenant_context(world.a.org):
            runs.run_cancel(Run.objects.get(pk=run_id))
        return claim(run_id, *args, **kwargs)

    monkeypatch.setattr(runs, "run_claim", cancel_then_claim)
    with tenant_context(world.a.org):
        _, run = message_post_user(world.a.session, "Hello", author=world.a.member)
        run_execute(str(run.pk))
        run = Run.objects.get(pk=run.pk)
        assert not Message.objects.filter(run=run, role=MessageRole.ASSISTANT).exists()
    assert run.status == RunStatus.CANCELLED
    assert run.attempts == 0 and run.started_at is None  # never claimed
    (call,) = calls
    assert call.stream.closed.is_set()
    assert [e.type for e in events_after(world.a, "run.queued")] == ["run.cancelled"]  # no worker event


def test_a_run_behind_another_is_not_claimed_and_closes_its_early_call(world, llm, use_llm, calls):
    use_llm(world.a)
    with tenant_context(world.a.org):
        world.a.session.config = {**(world.a.session.config or {}), "on_busy": "enqueue"}
        world.a.session.save(update_fields=["config"])
        _, first = message_post_user(world.a.session, "First", author=world.a.member)
        _, second = message_post_user(world.a.session, "Second", author=world.a.member)
        run_execute(str(second.pk))  # a stray task for the run that waits for the first
        second = Run.objects.get(pk=second.pk)
        assert second.status == RunStatus.QUEUED and second.attempts == 0
        assert not Message.objects.filter(run=second).exists()
        assert Run.objects.get(pk=first.pk).status == RunStatus.QUEUED
    (call,) = calls
    assert call.stream.closed.is_set()


def test_the_claim_locks_the_run_alone_and_keeps_what_the_peek_read(world, llm, use_llm):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    use_llm(world.a)
    with tenant_context(world.a.org):
        _, run = message_post_user(world.a.session, "Hello", author=world.a.member)
        peeked = runs.run_peek(run.pk)
        with CaptureQueriesContext(connection) as queries:
            claimed = runs.run_claim(run.pk, "host:1", peeked=peeked)
    locking = next(q["sql"] for q in queries if q["sql"].startswith("SELECT"))  # the claim's first read
    if connection.vendor == "postgresql":
        assert "FOR UPDATE" in locking
    assert "JOIN" not in locking  # the run's row only: the peek has its session, agent and trigger seq
    assert claimed.status == RunStatus.RUNNING and claimed.attempts == 1
    assert claimed.session is peeked.session and claimed.trigger_seq == peeked.trigger_seq == 1


def test_the_task_reads_the_run_with_its_organization_before_the_model_request(world, llm, use_llm, calls):
    """The queue task gets ids only: one read brings the run and its organization (no separate read of the
    organization), and the run reads the context's messages as rows, then sends its request."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from sessions_app import tasks

    use_llm(world.a)
    llm.script.reply("Read once.")
    with tenant_context(world.a.org):
        _, run = message_post_user(world.a.session, "Hello", author=world.a.member)
    with CaptureQueriesContext(connection) as queries:
        tasks.run_execute(str(run.pk), world.a.org.pk)
    with tenant_context(world.a.org):
        assert Run.objects.get(pk=run.pk).status == RunStatus.COMPLETED
        assert Message.objects.get(run=run, role=MessageRole.ASSISTANT).content == "Read once."
    sql = [q["sql"] for q in queries]
    first = sql[0]
    assert first.startswith("SELECT") and '"sessions_app_run"' in first.split(" FROM ")[1][:30]
    assert '"core_organization"' in first  # brought along with the run, session and agent
    assert not any(s.split(" FROM ")[1].startswith('"core_organization"') for s in sql if " FROM " in s)
