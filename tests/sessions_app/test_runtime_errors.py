"""Provider errors through the real openai client map to the catalogue, and the session stays usable."""

from __future__ import annotations

import pytest

from core.tenancy import tenant_context
from sessions_app.models import Message, MessageRole, MessageStatus, RunStatus, RuntimeState, Session
from tests.support.runtime import events, post_and_run, reload, task_queue_fixture  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("task_queue")]


def assert_failed_and_recovers(tenant, llm, run, code: str) -> dict:
    """The run failed with ``code``, said so in the catalogue's shape, and the next message works."""
    assert run.status == RunStatus.FAILED
    assert run.error_code == code
    assert run.error_message
    occurred = events(tenant, types=("error.occurred",), run=run)
    assert len(occurred) == 1
    error = occurred[0].data
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code and error["message"] == run.error_message
    assert isinstance(error["details"], dict)
    run_events = [e.type for e in events(tenant, run=run) if e.type.startswith("run.")]
    assert run_events[-1] == "run.failed"
    # The worker failed the run with a catalogued error: its part ended normally.
    worker_events = [e.type for e in events(tenant, run=run) if e.type.startswith("worker.")]
    assert worker_events == ["worker.spawned", "worker.completed"]
    assert reload(tenant, tenant.session).runtime_state == RuntimeState.ERROR

    llm.script.reply("Back to normal.")
    _, retry = post_and_run(tenant, "Are you there?")
    assert retry.status == RunStatus.COMPLETED
    assert reload(tenant, tenant.session).runtime_state == RuntimeState.IDLE
    with tenant_context(tenant.org):
        assert Message.objects.get(run=retry, role=MessageRole.ASSISTANT).content == "Back to normal."
        # The user message of the failed run is kept, and reaches the model again as history.
        assert Message.objects.filter(run=None, role=MessageRole.USER).count() == 2
    return error


def test_server_error_is_llm_error(world, llm, use_llm):
    use_llm(world.a, max_retries=0)
    llm.script.error(500)
    _, run = post_and_run(world.a)
    error = assert_failed_and_recovers(world.a, llm, run, "LLM_ERROR")
    assert error["details"] == {"status": 500}


def test_server_error_is_retried_before_any_token(world, llm, use_llm):
    use_llm(world.a, max_retries=1)
    llm.script.error(503).reply("Recovered.")
    _, run = post_and_run(world.a)
    assert run.status == RunStatus.COMPLETED
    assert len(llm.chat_requests) == 2


def test_rate_limit_honours_retry_after_then_completes(world, llm, use_llm):
    use_llm(world.a, max_retries=1)
    llm.script.rate_limit(retry_after=0.2).reply("Worth the wait.")
    _, run = post_and_run(world.a)
    assert run.status == RunStatus.COMPLETED
    first, second = llm.chat_requests
    assert second.time - first.time >= 0.2  # the client waited as asked before the retry
    with tenant_context(world.a.org):
        assert Message.objects.get(run=run, role=MessageRole.ASSISTANT).content == "Worth the wait."
    assert not events(world.a, types=("error.occurred",))


def test_rate_limit_with_retries_exhausted(world, llm, use_llm):
    use_llm(world.a, max_retries=1)
    llm.script.rate_limit(retry_after=0.05).rate_limit(retry_after=0.05)
    _, run = post_and_run(world.a)
    assert len(llm.chat_requests) == 2
    error = assert_failed_and_recovers(world.a, llm, run, "RATE_LIMITED")
    assert error["details"]["retry_after"] == pytest.approx(0.05)


def test_retry_after_is_capped(world, llm, use_llm, settings):
    settings.LLM_RETRY_AFTER_MAX_SECONDS = 0.1
    use_llm(world.a, max_retries=1)
    llm.script.rate_limit(retry_after=3600).reply("Soon enough.")
    _, run = post_and_run(world.a)
    assert run.status == RunStatus.COMPLETED


def test_context_length_exceeded_is_token_limit(world, llm, use_llm):
    use_llm(world.a)
    llm.script.context_length_exceeded()
    _, run = post_and_run(world.a)
    assert_failed_and_recovers(world.a, llm, run, "TOKEN_LIMIT")


def test_other_bad_request_is_llm_error(world, llm, use_llm):
    use_llm(world.a)
    llm.script.error(400, message="Unknown parameter.", type="invalid_request_error")
    _, run = post_and_run(world.a)
    error = assert_failed_and_recovers(world.a, llm, run, "LLM_ERROR")
    assert error["details"] == {"status": 400}


def test_hang_before_any_token_is_llm_timeout(world, llm, use_llm):
    use_llm(world.a, timeout_seconds=0.5)
    llm.script.hang()
    _, run = post_and_run(world.a)
    assert_failed_and_recovers(world.a, llm, run, "LLM_TIMEOUT")


def test_hang_mid_stream_is_llm_timeout_and_keeps_the_partial_reply(world, llm, use_llm):
    use_llm(world.a, timeout_seconds=0.5)
    llm.script.hang(partial="Let me think about")
    _, run = post_and_run(world.a)
    with tenant_context(world.a.org):
        partial = Message.objects.get(run=run, role=MessageRole.ASSISTANT)
    assert partial.content == "Let me think about"
    assert partial.status == MessageStatus.FAILED
    assert_failed_and_recovers(world.a, llm, run, "LLM_TIMEOUT")


def test_malformed_chunk_is_llm_error(world, llm, use_llm):
    use_llm(world.a)
    llm.script.malformed(text="Fine so far but then", after_chunks=2)
    _, run = post_and_run(world.a)
    assert_failed_and_recovers(world.a, llm, run, "LLM_ERROR")


def test_dropped_connection_keeps_the_partial_reply_as_failed(world, llm, use_llm):
    use_llm(world.a)
    llm.script.drop(text="This stream is cut off mid way", after_chunks=3)
    _, run = post_and_run(world.a)
    with tenant_context(world.a.org):
        partial = Message.objects.get(run=run, role=MessageRole.ASSISTANT)
        updates = [e.data for e in events(world.a, types=("message.updated",), run=run)]
    assert partial.content == "This stream is "
    assert partial.status == MessageStatus.FAILED
    assert updates[-1]["id"] == str(partial.pk) and updates[-1]["status"] == "failed"
    assert_failed_and_recovers(world.a, llm, run, "LLM_ERROR")
    # The failed partial reply is not sent back to the model as if it had been said.
    last = llm.chat_requests[-1].body["messages"]
    assert all(m["content"] != "This stream is " for m in last)


def test_unreachable_server_is_llm_error(world, llm, use_llm):
    use_llm(world.a, base_url="http://127.0.0.1:9/v1")
    _, run = post_and_run(world.a)
    assert run.status == RunStatus.FAILED and run.error_code == "LLM_ERROR"
    with tenant_context(world.a.org):
        assert Session.objects.get(pk=world.a.session.pk).runtime_state == RuntimeState.ERROR
