"""The context builder (system prompt, limits, tool turns kept whole) and the model resolution order."""

from __future__ import annotations

import pytest

from core.tenancy import tenant_context
from sessions_app.models import Message, MessageRole, MessageStatus, Run, Session, SessionTemplate
from sessions_app.runtime.context import build_context, resolve_model
from sessions_app.runtime.providers import ProviderSettings
from sessions_app.services.lifecycle import session_create, session_update
from sessions_app.services.messages import message_append
from tests.support.runtime import run_now, task_queue_fixture  # noqa: F401
from tools_app.models import ToolCall, ToolCallStatus

pytestmark = pytest.mark.django_db


def say(tenant, role: str, content: str, **kwargs) -> Message:
    return message_append(tenant.session, role=role, content=content, **kwargs)


def context(tenant, **agent_fields) -> list[dict]:
    for name, value in agent_fields.items():
        setattr(tenant.agent, name, value)
    return build_context(Session.objects.get(pk=tenant.session.pk), tenant.agent)


def tool_turn(tenant, question: str, calls: list[tuple[str, str]]) -> list[Message]:
    """A user question, the assistant asking for tools, and one tool result per call."""
    user = say(tenant, MessageRole.USER, question)
    run = Run.objects.create(organization=tenant.org, session=tenant.session, trigger_message=user)
    metadata = {"tool_calls": [{"id": cid, "name": "calculator", "arguments": "{}"} for cid, _ in calls]}
    asked = say(tenant, MessageRole.ASSISTANT, "", run=run, metadata=metadata)
    results = []
    for call_id, result in calls:
        call = ToolCall.objects.create(
            organization=tenant.org,
            session=tenant.session,
            run=run,
            call_id=call_id,
            tool_name="calculator",
            status=ToolCallStatus.COMPLETED,
        )
        results.append(
            say(tenant, MessageRole.TOOL, result, run=run, tool_call=call, metadata={"tool_call_id": call_id})
        )
    return [user, asked, *results]


def test_system_prompt_is_the_agents_then_the_sessions(world):
    with tenant_context(world.a.org):
        session_update(world.a.session, config={"system_prompt": "Answer in French."})
        say(world.a, MessageRole.USER, "Hello")
        messages = context(world.a)
        assert messages[0] == {"role": "system", "content": "Be brief.\n\nAnswer in French."}
        assert messages[1:] == [{"role": "user", "content": "Hello"}]
        assert context(world.a, system_prompt="")[0] == {"role": "system", "content": "Answer in French."}
        session_update(world.a.session, config={"system_prompt": ""})
        assert context(world.a, system_prompt="") == [{"role": "user", "content": "Hello"}]


def test_only_the_most_recent_messages_go_in(world):
    with tenant_context(world.a.org):
        for i in range(10):
            say(world.a, MessageRole.USER if i % 2 == 0 else MessageRole.ASSISTANT, f"message {i}")
        messages = context(world.a, max_context_messages=4)
    assert [m["content"] for m in messages[1:]] == ["message 6", "message 7", "message 8", "message 9"]


def answer(tenant, question: Message, content: str) -> Message:
    run = Run.objects.create(organization=tenant.org, session=tenant.session, trigger_message=question)
    return say(tenant, MessageRole.ASSISTANT, content, run=run)


def test_a_reply_that_came_after_queued_messages_follows_its_own_question(world):
    """Questions queued while a run worked: each reply goes back to its question's turn."""
    with tenant_context(world.a.org):
        first, second = say(world.a, MessageRole.USER, "q1"), say(world.a, MessageRole.USER, "q2")
        answer(world.a, first, "a1")
        answer(world.a, second, "a2")
        say(world.a, MessageRole.USER, "q3")
        assert [m["content"] for m in context(world.a)[1:]] == ["q1", "a1", "q2", "a2", "q3"]
        assert [m["content"] for m in context(world.a, max_context_messages=3)[1:]] == ["q2", "a2", "q3"]


def test_the_newest_turns_are_found_in_a_long_session_and_across_a_long_queue(world):
    with tenant_context(world.a.org):
        for i in range(40):  # a long session of answered questions
            answer(world.a, say(world.a, MessageRole.USER, f"q{i}"), f"a{i}")
        assert [m["content"] for m in context(world.a, max_context_messages=3)[1:]] == ["a38", "q39", "a39"]
        # Five questions queued, four answered after all of them: the newest messages by number are
        # replies to older turns, so the newest turns lie further back than the newest messages.
        queued = [say(world.a, MessageRole.USER, f"w{i}") for i in range(5)]
        for i, question in enumerate(queued[:4]):
            answer(world.a, question, f"r{i}")
        assert [m["content"] for m in context(world.a, max_context_messages=3)[1:]] == ["w3", "r3", "w4"]
        assert [m["content"] for m in context(world.a, max_context_messages=2)[1:]] == ["r3", "w4"]


def test_the_token_budget_is_respected_and_the_newest_message_always_goes_in(world):
    with tenant_context(world.a.org):
        for i in range(6):
            say(world.a, MessageRole.USER, f"{i}" * 100)  # 25 tokens + 4 overhead each
        # "Be brief." costs 3 + 4; three messages of 29 fit in 94, a fourth does not.
        assert [m["content"][0] for m in context(world.a, max_context_tokens=94)[1:]] == ["3", "4", "5"]
        assert [m["content"][0] for m in context(world.a, max_context_tokens=93)[1:]] == ["4", "5"]
        assert [m["content"][0] for m in context(world.a, max_context_tokens=10)[1:]] == ["5"]


def test_streaming_and_failed_replies_are_left_out(world):
    with tenant_context(world.a.org):
        say(world.a, MessageRole.USER, "one")
        say(world.a, MessageRole.ASSISTANT, "broken", status=MessageStatus.FAILED)
        say(world.a, MessageRole.USER, "two")
        say(world.a, MessageRole.ASSISTANT, "still writ", status=MessageStatus.STREAMING)
        say(world.a, MessageRole.ASSISTANT, "stopped half", status=MessageStatus.CANCELLED)
        assert [m["content"] for m in context(world.a)[1:]] == ["one", "two", "stopped half"]


def test_tool_results_follow_their_call(world):
    with tenant_context(world.a.org):
        tool_turn(world.a, "sums?", [("call_a", '{"result": 2}'), ("call_b", '{"result": 4}')])
        say(world.a, MessageRole.ASSISTANT, "2 and 4.")
        messages = context(world.a)[1:]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "assistant"]
    asked = messages[1]
    assert asked["content"] is None
    assert [c["id"] for c in asked["tool_calls"]] == ["call_a", "call_b"]
    assert asked["tool_calls"][0] == {
        "id": "call_a",
        "type": "function",
        "function": {"name": "calculator", "arguments": "{}"},
    }
    assert [(m["tool_call_id"], m["content"]) for m in messages[2:4]] == [
        ("call_a", '{"result": 2}'),
        ("call_b", '{"result": 4}'),
    ]


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_a_cut_never_leaves_a_tool_result_without_its_call(world, limit):
    with tenant_context(world.a.org):
        tool_turn(world.a, "sums?", [("call_a", '{"result": 2}'), ("call_b", '{"result": 4}')])
        say(world.a, MessageRole.ASSISTANT, "2 and 4.")
        messages = context(world.a, max_context_messages=limit)[1:]
    # A window starting inside the tool turn drops the orphaned results and keeps what follows.
    assert [m["role"] for m in messages] == ["assistant"]
    assert messages[0]["content"] == "2 and 4."


def test_a_direct_task_reads_as_a_note_to_the_model(world):
    with tenant_context(world.a.org):
        call = ToolCall.objects.create(
            organization=world.a.org, session=world.a.session, tool_name="current_time", status="completed"
        )
        say(
            world.a,
            MessageRole.TOOL,
            '{"iso": "2030-01-01"}',
            tool_call=call,
            metadata={"tool_name": "clock"},
        )
        (note,) = context(world.a)[1:]
    assert note["role"] == "user"
    assert "clock" in note["content"] and '{"iso": "2030-01-01"}' in note["content"]


# --- model resolution ---------------------------------------------------------------------------------


def test_model_resolution_order(world, settings):
    settings.LLM_DEFAULT_MODEL = "env-model"
    conf = ProviderSettings(kind="compatible", default_model="provider-model")
    with tenant_context(world.a.org):
        template = SessionTemplate.objects.create(
            organization=world.a.org, name="T", agent=world.a.agent, config={"model": "template-model"}
        )
        session = Session.objects.create(
            organization=world.a.org,
            agent=world.a.agent,
            template=template,
            config={"model": "session-model"},
        )
        world.a.org.default_model = "org-model"
        world.a.org.save()
        session = Session.objects.select_related("agent", "template", "organization").get(pk=session.pk)

        assert resolve_model(session, conf, "request-model") == "request-model"
        assert resolve_model(session, conf) == "session-model"
        session.config = {}
        assert resolve_model(session, conf) == "template-model"
        session.template.config = {}
        assert resolve_model(session, conf) == "test-model"  # the agent's
        session.agent.model = ""
        assert resolve_model(session, conf) == "org-model"
        session.organization.default_model = ""
        assert resolve_model(session, conf) == "provider-model"
        assert resolve_model(session, ProviderSettings(kind="compatible")) == "env-model"
        # The demo provider only has one model.
        assert resolve_model(session, ProviderSettings(kind="demo"), "request-model") == "demo"


def test_a_template_model_reaches_sessions_made_from_it(world):
    with tenant_context(world.a.org):
        template = SessionTemplate.objects.create(
            organization=world.a.org, name="T", agent=world.a.agent, config={"model": "template-model"}
        )
        session = session_create(organization=world.a.org, agent=world.a.agent, template=template)
        assert resolve_model(session, ProviderSettings(kind="compatible")) == "template-model"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("task_queue")
def test_the_model_named_in_the_request_is_used_for_that_run_only(world, llm, use_llm, client_for):
    use_llm(world.a, default_model="provider-model")
    url = world.a.url(f"sessions/{world.a.session.pk}/messages/")
    client = client_for(world.a.member)
    first = client.post(url, {"content": "hi", "model": "gpt-4o-mini"}, format="json")
    assert first.status_code == 201, first.content
    with tenant_context(world.a.org):
        run = run_now(world.a, Run.objects.get(pk=first.json()["run"]["id"]))
    assert run.model == "gpt-4o-mini" and llm.chat_requests[-1].body["model"] == "gpt-4o-mini"

    second = client.post(url, {"content": "again"}, format="json")
    with tenant_context(world.a.org):
        run = run_now(world.a, Run.objects.get(pk=second.json()["run"]["id"]))
    assert run.model == "test-model" and llm.chat_requests[-1].body["model"] == "test-model"
    with tenant_context(world.a.org):
        session_update(world.a.session, config={"model": "session-model"})
    third = client.post(url, {"content": "once more"}, format="json")
    run = run_now(world.a, Run(pk=third.json()["run"]["id"]))
    assert run.model == "session-model" and llm.chat_requests[-1].body["model"] == "session-model"
