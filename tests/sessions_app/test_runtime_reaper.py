"""The reaper: a run whose worker died (lapsed lease) is retried from its persisted state, or failed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.tenancy import tenant_context
from sessions_app.models import Message, MessageRole, MessageStatus, Run, RunStatus, RuntimeState
from sessions_app.services.messages import message_append
from sessions_app.services.runs import run_cancel, run_claim, runs_reap
from tests.support.runtime import (
    events,
    post,
    post_and_run,
    reload,
    run_now,
    task_queue_fixture,  # noqa: F401
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("task_queue")]


def die_mid_stream(tenant, run: Run, partial: str = "I was say") -> Run:
    """What a worker leaves behind when it is killed while streaming: a claimed run, a half-written reply."""
    with tenant_context(tenant.org):
        claimed = run_claim(run.pk, "host:4242")
        assert claimed is not None
        if not Message.objects.filter(run=claimed).exists():  # a retry writes into the same reply
            message_append(
                tenant.session, role=MessageRole.ASSISTANT, status=MessageStatus.STREAMING, run=claimed
            )
        Message.objects.filter(run=claimed).update(content=partial)
        Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
        return Run.objects.get(pk=run.pk)


def test_a_stalled_run_is_requeued_and_retried_without_duplicating_the_reply(world, llm, use_llm, task_queue):
    use_llm(world.a)
    message, run = post(world.a, "Tell me something")
    die_mid_stream(world.a, run)

    assert runs_reap() == 1
    run = reload(world.a, run)
    assert run.status == RunStatus.QUEUED and run.worker == "" and run.lease_expires_at is None
    stalled = events(world.a, types=("worker.stalled",), run=run)
    assert [e.data for e in stalled] == [{"worker": "host:4242", "attempt": 1}]
    requeued = events(world.a, types=("run.queued",), run=run)[-1]
    assert requeued.data["retry"] is True and requeued.seq > stalled[0].seq
    assert task_queue.run_ids() == [str(run.pk), str(run.pk)]  # dispatched again

    llm.script.reply("Here is the whole answer.")
    run = run_now(world.a, run)
    assert run.status == RunStatus.COMPLETED and run.attempts == 2
    with tenant_context(world.a.org):
        replies = list(Message.objects.filter(role=MessageRole.ASSISTANT))
        assert Message.objects.filter(role=MessageRole.USER).get().pk == message.pk
    assert len(replies) == 1
    assert replies[0].run_id == run.pk
    assert replies[0].content == "Here is the whole answer." and replies[0].status == MessageStatus.COMPLETE
    # The half-written reply was not sent to the model as history.
    assert [m["role"] for m in llm.chat_requests[-1].body["messages"]] == ["system", "user"]
    assert events(world.a, types=("stream.started",), run=run)[-1].data["attempt"] == 2


def test_after_the_last_attempt_the_run_fails_and_the_session_stays_usable(world, llm, use_llm, settings):
    settings.RUN_MAX_ATTEMPTS = 2
    use_llm(world.a)
    message, run = post(world.a, "Tell me something")
    die_mid_stream(world.a, run)
    assert runs_reap() == 1
    die_mid_stream(world.a, run, partial="I was saying th")
    assert runs_reap() == 1

    run = reload(world.a, run)
    assert run.status == RunStatus.FAILED and run.attempts == 2
    assert run.error_code == "INTERNAL_ERROR"
    assert [e.type for e in events(world.a, run=run)][-4:] == [
        "message.updated",
        "run.failed",
        "error.occurred",
        "session.updated",
    ]
    error = events(world.a, types=("error.occurred",), run=run)[0].data
    assert set(error) == {"code", "message", "details"} and error["code"] == "INTERNAL_ERROR"
    with tenant_context(world.a.org):
        partial = Message.objects.get(run=run)
        assert Message.objects.get(role=MessageRole.USER).pk == message.pk  # never lost
    assert partial.status == MessageStatus.FAILED and partial.content == "I was saying th"
    assert reload(world.a, world.a.session).runtime_state == RuntimeState.ERROR

    llm.script.reply("Fresh start.")
    _, retry = post_and_run(world.a, "Hello again")
    assert retry.status == RunStatus.COMPLETED
    assert [m["content"] for m in llm.chat_requests[-1].body["messages"][1:]] == [
        "Tell me something",
        "Hello again",
    ]


def test_a_claim_past_the_attempt_limit_fails_the_run(world, settings):
    settings.RUN_MAX_ATTEMPTS = 1
    _, run = post(world.a)
    die_mid_stream(world.a, run)
    with tenant_context(world.a.org):
        Run.objects.filter(pk=run.pk).update(status=RunStatus.QUEUED, lease_expires_at=None)
        assert run_claim(run.pk, "late-worker") is None
    run = reload(world.a, run)
    assert run.status == RunStatus.FAILED and run.error_code == "INTERNAL_ERROR"
    assert events(world.a, types=("error.occurred",), run=run)


def test_a_live_lease_is_left_alone(world):
    _, run = post(world.a)
    with tenant_context(world.a.org):
        run_claim(run.pk, "host:1")
    assert runs_reap() == 0
    assert reload(world.a, run).status == RunStatus.RUNNING
    assert not events(world.a, types=("worker.stalled",))


def test_a_stalled_run_with_a_cancel_request_ends_cancelled(world):
    _, run = post(world.a)
    die_mid_stream(world.a, run, partial="Half")
    with tenant_context(world.a.org):
        run_cancel(Run.objects.get(pk=run.pk))  # flagged only: it is running as far as anyone knows
    assert reload(world.a, run).status == RunStatus.RUNNING
    assert runs_reap() == 1
    run = reload(world.a, run)
    assert run.status == RunStatus.CANCELLED
    with tenant_context(world.a.org):
        partial = Message.objects.get(run=run)
    assert partial.status == MessageStatus.CANCELLED and partial.content == "Half"


def test_a_queued_run_whose_task_was_lost_is_dispatched_again(world, task_queue, settings):
    _, run = post(world.a)
    _, waiting = post(world.a, "second")  # behind the first: not dispatched by the reaper either
    with tenant_context(world.a.org):
        long_ago = timezone.now() - timedelta(seconds=3 * settings.RUN_LEASE_SECONDS)
        Run.objects.filter(pk=run.pk).update(queued_at=long_ago)
        Run.objects.filter(pk=waiting.pk).update(queued_at=long_ago + timedelta(seconds=1))
    assert task_queue.run_ids() == [str(run.pk)]
    assert runs_reap() == 0
    assert task_queue.run_ids() == [str(run.pk), str(run.pk)]


def test_the_reaper_covers_every_organization(world):
    _, run_a = post(world.a)
    _, run_b = post(world.b)
    die_mid_stream(world.a, run_a)
    die_mid_stream(world.b, run_b)
    assert runs_reap() == 2
    assert reload(world.a, run_a).status == RunStatus.QUEUED
    assert reload(world.b, run_b).status == RunStatus.QUEUED


def test_a_worker_lost_after_storing_the_reply_is_completed_with_that_reply(world, llm, use_llm, task_queue):
    """The worker stored the finished reply but died before it completed the run: the retry completes the
    run with the stored reply, without asking the model again (which would store a second reply)."""
    use_llm(world.a)
    _, run = post(world.a, "Tell me something")
    die_mid_stream(world.a, run, partial="The finished answer.")
    with tenant_context(world.a.org):
        Message.objects.filter(run=run).update(
            status=MessageStatus.COMPLETE, prompt_tokens=7, completion_tokens=3
        )
    assert runs_reap() == 1
    requests_before = len(llm.chat_requests)

    run = run_now(world.a, run)
    assert run.status == RunStatus.COMPLETED and run.attempts == 2
    assert (run.prompt_tokens, run.completion_tokens) == (7, 3)
    assert len(llm.chat_requests) == requests_before  # the model was not asked again
    with tenant_context(world.a.org):
        replies = list(Message.objects.filter(role=MessageRole.ASSISTANT))
    assert [(m.content, m.status) for m in replies] == [("The finished answer.", MessageStatus.COMPLETE)]
    types = [e.type for e in events(world.a, run=run)]
    assert types.count("worker.spawned") == 2 and types[-1] != "worker.spawned"
    assert types.count("run.completed") == 1 and "worker.completed" in types
    assert reload(world.a, world.a.session).runtime_state == RuntimeState.IDLE
