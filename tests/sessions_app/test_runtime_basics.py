"""The executor against the real openai client and a real HTTP server: reply, coalescing, tool loop."""

from __future__ import annotations

import pytest

from core.tenancy import tenant_context
from history_app.services.checkpoints import checkpoint_state
from sessions_app.models import Checkpoint, Message, MessageStatus, Run, RunStatus, SessionEvent
from sessions_app.runtime.executor import run_execute
from sessions_app.services.messages import message_post_user

pytestmark = pytest.mark.django_db(transaction=True)


def post_and_run(tenant, content="Hello there"):
    with tenant_context(tenant.org):
        message, run = message_post_user(tenant.session, content, author=tenant.member)
        run_execute(str(run.pk))
        return message, Run.objects.get(pk=run.pk)


def event_types(tenant):
    with tenant_context(tenant.org):
        return list(
            SessionEvent.objects.filter(session=tenant.session).order_by("seq").values_list("type", flat=True)
        )


def test_streams_reply_and_records_run(world, llm, use_llm):
    use_llm(world.a)
    llm.script.reply("The quick brown fox jumps over the lazy dog", delay=0.0)
    _, run = post_and_run(world.a)
    assert run.status == RunStatus.COMPLETED
    assert run.prompt_tokens > 0 and run.completion_tokens > 0
    assert run.ttft_ms is not None and run.total_ms is not None
    with tenant_context(world.a.org):
        reply = Message.objects.get(run=run, role="assistant")
        chunks = SessionEvent.objects.filter(session=world.a.session, type="stream.chunk").order_by("seq")
        assert "".join(e.data["delta"] for e in chunks) == reply.content
    assert reply.content == "The quick brown fox jumps over the lazy dog"
    assert reply.status == MessageStatus.COMPLETE
    types = event_types(world.a)
    tail = types[types.index("run.queued") :]
    assert tail[:3] == ["run.queued", "worker.spawned", "run.started"]
    assert tail.index("stream.started") < tail.index("stream.chunk") < tail.index("stream.ended")
    assert tail[-3:] == ["run.completed", "worker.completed", "session.updated"]
    request = llm.chat_requests[-1]
    assert request.body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert request.body["messages"][-1] == {"role": "user", "content": "Hello there"}
    assert request.body["model"] == "test-model"
    # A completed run leaves a checkpoint of the session as it ended, kept by reference.
    with tenant_context(world.a.org):
        (checkpoint,) = Checkpoint.objects.filter(session=world.a.session)
        state = checkpoint_state(checkpoint)
    assert checkpoint.reason == "auto" and checkpoint.state["by_reference"] is True
    assert [m["content"] for m in state["messages"]] == ["Hello there", reply.content]


def test_stream_is_coalesced(world, llm, use_llm):
    use_llm(world.a)
    text = " ".join(f"w{i}" for i in range(400))
    llm.script.reply(text, delay=0.0005)
    _, run = post_and_run(world.a)
    with tenant_context(world.a.org):
        chunks = list(
            SessionEvent.objects.filter(session=world.a.session, type="stream.chunk").order_by("seq")
        )
    assert "".join(e.data["delta"] for e in chunks) == text
    assert len(chunks) < 400 / 4  # many deltas per flushed chunk event


def test_the_first_delta_goes_out_at_once_and_later_ones_wait_for_the_flush(world, llm, use_llm, settings):
    """With a flush interval longer than the reply, the first delta is a chunk of its own, sent as soon as
    it arrives; everything after it waits for the next flush, here the end of the stream."""
    settings.STREAM_FLUSH_MS = 60_000
    use_llm(world.a)
    text = " ".join(f"w{i}" for i in range(20))
    llm.script.reply(text, delay=0.01)  # 0.2 s in all: within the one-second ceiling of a flush's wait
    _, run = post_and_run(world.a)
    assert run.status == RunStatus.COMPLETED
    with tenant_context(world.a.org):
        chunks = list(
            SessionEvent.objects.filter(session=world.a.session, type="stream.chunk").order_by("seq")
        )
    assert [e.data["delta"] for e in chunks] == ["w0 ", text[len("w0 ") :]]
    assert [e.data["index"] for e in chunks] == [1, 2]


def test_tool_call_loop_auto(world, llm, use_llm):
    with tenant_context(world.a.org):
        world.a.agent.tools = ["calculator"]
        world.a.agent.save()
    use_llm(world.a)
    llm.script.tool_call("calculator", {"expression": "6*7"}).reply("It is 42.")
    _, run = post_and_run(world.a, "what is 6*7?")
    assert run.status == RunStatus.COMPLETED
    second = llm.chat_requests[1].body
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "calculator"
    assert second["messages"][-1]["role"] == "tool"
    assert '"result": 42' in second["messages"][-1]["content"]
    with tenant_context(world.a.org):
        assert list(Message.objects.filter(session=world.a.session).values_list("role", flat=True)) == [
            "user",
            "assistant",
            "tool",
            "assistant",
        ]
