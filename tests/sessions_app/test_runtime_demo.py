"""The built-in offline ``demo`` model: the default with no provider configured."""

from __future__ import annotations

import json

import pytest

from core.tenancy import tenant_context
from sessions_app.models import Message, MessageRole, RunStatus
from sessions_app.services.lifecycle import session_create
from tests.support.runtime import events, post_and_run, task_queue_fixture  # noqa: F401
from tools_app.models import ToolCall

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("task_queue")]


@pytest.fixture(autouse=True)
def demo_environment(settings):
    settings.LLM_PROVIDER = "demo"
    settings.LLM_DEFAULT_MODEL = "demo"
    settings.DEMO_TOKEN_DELAY_MS = 0


def reply_of(tenant, run) -> Message:
    with tenant_context(tenant.org):
        return Message.objects.filter(run=run, role=MessageRole.ASSISTANT).order_by("-seq").first()


def test_demo_is_the_default_and_replies_deterministically(world, client_for):
    _, run = post_and_run(world.a, "Hello there, my good friend")
    assert run.status == RunStatus.COMPLETED
    assert run.model == "demo" and run.provider == "demo"
    assert run.prompt_tokens > 0 and run.completion_tokens > 0
    text = reply_of(world.a, run).content
    assert text.startswith("This is the built-in demo model")
    assert "You wrote 5 words" in text
    chunks = events(world.a, types=("stream.chunk",), run=run)
    assert chunks and "".join(e.data["delta"] for e in chunks) == text

    with tenant_context(world.a.org):
        other = session_create(organization=world.a.org, agent=world.a.agent, owner=world.a.member)
    _, again = post_and_run(world.a, "Hello there, my good friend", session=other)
    assert reply_of(world.a, again).content == text

    runs = client_for(world.a.member).get(world.a.url(f"sessions/{world.a.session.pk}/runs/")).json()
    assert [(r["model"], r["provider"]) for r in runs] == [("demo", "demo")]


def test_calculate_asks_the_calculator_when_the_agent_offers_it(world):
    with tenant_context(world.a.org):
        world.a.agent.tools = ["calculator"]
        world.a.agent.save()
    _, run = post_and_run(world.a, "calculate 2+2")
    assert run.status == RunStatus.COMPLETED and run.model == "demo"
    with tenant_context(world.a.org):
        call = ToolCall.objects.get(run=run)
        roles = list(Message.objects.order_by("seq").values_list("role", flat=True))
    assert call.tool_name == "calculator" and call.arguments == {"expression": "2+2"}
    assert call.status == "completed" and call.result["result"] == 4
    assert roles == ["user", "assistant", "tool", "assistant"]
    final = reply_of(world.a, run).content
    assert final.startswith("The tool answered:") and json.loads(final.split(": ", 1)[1])["result"] == 4


def test_calculate_is_plain_text_when_the_calculator_is_not_offered(world):
    _, run = post_and_run(world.a, "calculate 2+2")
    assert run.status == RunStatus.COMPLETED
    with tenant_context(world.a.org):
        assert not ToolCall.objects.exists()
    assert reply_of(world.a, run).content.startswith("This is the built-in demo model")


def test_the_tool_command_calls_any_offered_tool(world):
    with tenant_context(world.a.org):
        world.a.agent.tools = ["current_time"]
        world.a.agent.save()
    _, run = post_and_run(world.a, '/tool current_time {"timezone": "Europe/Paris"}')
    assert run.status == RunStatus.COMPLETED
    with tenant_context(world.a.org):
        call = ToolCall.objects.get(run=run)
    assert call.tool_name == "current_time" and call.result["timezone"] == "Europe/Paris"
