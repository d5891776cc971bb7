"""Which tools a run may use: the organization's settings, the agent's subset and approval mode, the
session's approval mode; the strictest applies and disabled or denied tools are never offered."""

from __future__ import annotations

import pytest

from core.tenancy import tenant_context
from sessions_app.services.lifecycle import session_update
from tests.support.assertions import assert_error
from tests.support.runtime import post_and_run, task_queue_fixture  # noqa: F401
from tools_app.models import ToolCall, ToolPolicy
from tools_app.policies import policy_for_direct_task, strictest, tools_for_run

pytestmark = pytest.mark.django_db

BUILTIN = ["calculator", "current_time", "search_history"]


def set_policy(tenant, tool: str, *, enabled: bool = True, policy: str = "") -> None:
    with tenant_context(tenant.org):
        ToolPolicy.objects.update_or_create(
            organization=tenant.org, tool_name=tool, defaults={"enabled": enabled, "policy": policy}
        )


def offered(tenant, *, agent_tools=BUILTIN, agent_mode="auto", session_mode=None) -> dict[str, str]:
    with tenant_context(tenant.org):
        tenant.agent.tools = list(agent_tools)
        tenant.agent.approval_mode = agent_mode
        tenant.agent.save()
        session = session_update(
            tenant.session, config={"approval_mode": session_mode} if session_mode else {}
        )
        return {name: policy for name, (_spec, policy) in tools_for_run(session, tenant.agent).items()}


def test_tools_list_with_schemas(world, client_for, settings):
    settings.ENABLE_EXEC_SESSIONS = False
    r = client_for(world.a.viewer).get(world.a.url("tools/"))
    assert r.status_code == 200
    tools = {t["name"]: t for t in r.json()}
    assert sorted(tools) == BUILTIN  # python and shell only with execution sessions on
    calculator = tools["calculator"]
    assert calculator["parameters"]["type"] == "object"
    assert calculator["parameters"]["required"] == ["expression"]
    assert calculator["description"] and calculator["timeout"] == 5
    assert (calculator["side_effect"], calculator["default_policy"]) == ("read_only", "auto")
    assert (calculator["enabled"], calculator["policy"]) == (True, "auto")

    settings.ENABLE_EXEC_SESSIONS = True
    tools = {t["name"]: t for t in client_for(world.a.viewer).get(world.a.url("tools/")).json()}
    assert (tools["python"]["side_effect"], tools["python"]["policy"]) == ("runs_code", "manual")
    assert tools["shell"]["parameters"]["required"] == ["code"]


def test_tools_list_shows_the_organizations_own_settings(world, client_for):
    set_policy(world.a, "current_time", enabled=False)
    set_policy(world.a, "calculator", policy="manual")
    tools = {t["name"]: t for t in client_for(world.a.member).get(world.a.url("tools/")).json()}
    assert (tools["current_time"]["enabled"], tools["current_time"]["policy"]) == (False, "deny")
    assert (tools["calculator"]["enabled"], tools["calculator"]["policy"]) == (True, "manual")
    theirs = {t["name"]: t for t in client_for(world.b.member).get(world.b.url("tools/")).json()}
    assert theirs["current_time"]["enabled"] is True and theirs["calculator"]["policy"] == "auto"


def test_admins_set_tool_policies(world, client_for):
    admin = client_for(world.a.admin)
    r = admin.post(
        world.a.url("tool-policies/"), {"tool_name": "calculator", "policy": "manual"}, format="json"
    )
    assert r.status_code == 201, r.content
    assert (r.json()["enabled"], r.json()["policy"]) == (True, "manual")
    r = admin.post(
        world.a.url("tool-policies/"), {"tool_name": "calculator", "enabled": False}, format="json"
    )
    assert r.status_code == 201 and r.json()["enabled"] is False  # an upsert by name
    listed = admin.get(world.a.url("tool-policies/")).json()
    assert [(p["tool_name"], p["enabled"]) for p in listed] == [("calculator", False)]
    assert client_for(world.b.admin).get(world.b.url("tool-policies/")).json() == []
    assert admin.delete(world.a.url(f"tool-policies/{listed[0]['id']}/")).status_code == 204


def test_tool_policy_errors(world, client_for):
    url = world.a.url("tool-policies/")
    r = client_for(world.a.member).post(url, {"tool_name": "calculator", "policy": "auto"}, format="json")
    assert_error(r, 403, "PERMISSION_DENIED")
    admin = client_for(world.a.admin)
    assert_error(admin.post(url, {"tool_name": "teleport"}, format="json"), 404, "TOOL_NOT_FOUND")
    r = admin.post(url, {"tool_name": "calculator", "policy": "sometimes"}, format="json")
    assert_error(r, 400, "VALIDATION_ERROR")


def test_strictest_wins():
    assert strictest("auto", None, "manual") == "manual"
    assert strictest("manual", "deny", "auto") == "deny"
    assert strictest("auto", None) == "auto"


def test_only_the_agents_subset_is_offered(world):
    assert offered(world.a, agent_tools=["calculator"]) == {"calculator": "auto"}
    assert offered(world.a, agent_tools=[]) == {}
    assert offered(world.a, agent_tools=["calculator", "no_such_tool"]) == {"calculator": "auto"}


def test_an_agent_without_tools_reads_no_tool_settings(world, django_assert_num_queries):
    with tenant_context(world.a.org):
        world.a.agent.tools = []
        with django_assert_num_queries(0):  # on the way to every model call of a run
            assert tools_for_run(world.a.session, world.a.agent) == {}


def test_disabled_and_denied_tools_are_never_offered(world):
    set_policy(world.a, "current_time", enabled=False)
    set_policy(world.a, "search_history", policy="deny")
    assert offered(world.a) == {"calculator": "auto"}
    assert offered(world.b) == dict.fromkeys(BUILTIN, "auto")  # another organization's settings


def test_exec_tools_need_the_feature_flag(world, settings):
    settings.ENABLE_EXEC_SESSIONS = False
    assert offered(world.a, agent_tools=["python", "shell"]) == {}
    settings.ENABLE_EXEC_SESSIONS = True
    assert offered(world.a, agent_tools=["python", "shell"]) == {"python": "manual", "shell": "manual"}


@pytest.mark.parametrize(
    ("org_policy", "agent_mode", "session_mode", "expected"),
    [
        ("", "auto", None, "auto"),
        ("auto", "auto", "auto", "auto"),
        ("manual", "auto", "auto", "manual"),
        ("auto", "manual", None, "manual"),
        ("auto", "auto", "manual", "manual"),
        ("auto", "manual", "auto", "manual"),  # a session cannot loosen its agent
        ("deny", "manual", "manual", None),
    ],
)
def test_the_strictest_setting_applies(world, org_policy, agent_mode, session_mode, expected):
    set_policy(world.a, "calculator", policy=org_policy)
    tools = offered(world.a, agent_tools=["calculator"], agent_mode=agent_mode, session_mode=session_mode)
    assert tools.get("calculator") == expected


def test_direct_tasks_follow_the_organization_the_agent_and_the_session(world):
    set_policy(world.a, "current_time", enabled=False)
    set_policy(world.a, "search_history", policy="manual")
    with tenant_context(world.a.org):
        assert policy_for_direct_task("calculator", world.a.session)[1] == "auto"
        assert policy_for_direct_task("search_history", world.a.session)[1] == "manual"
        assert policy_for_direct_task("current_time", world.a.session)[1] == "deny"
        spec, policy = policy_for_direct_task("teleport", world.a.session)
        assert spec is None and policy == "deny"
        session = session_update(world.a.session, config={"approval_mode": "manual"})
        assert policy_for_direct_task("calculator", session)[1] == "manual"
        session = session_update(session, config={"approval_mode": "auto"})
        session.agent.approval_mode = "manual"  # the agent's mode applies as well
        assert policy_for_direct_task("calculator", session)[1] == "manual"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("task_queue")
def test_the_model_only_sees_the_offered_tools(world, llm, use_llm):
    use_llm(world.a)
    set_policy(world.a, "current_time", enabled=False)
    set_policy(world.a, "search_history", policy="deny")
    offered(world.a, agent_tools=BUILTIN)
    post_and_run(world.a, "What can you do?")
    request = llm.chat_requests[-1].body
    assert [t["function"]["name"] for t in request["tools"]] == ["calculator"]
    assert request["tools"][0]["function"]["parameters"]["required"] == ["expression"]

    offered(world.a, agent_tools=[])
    post_and_run(world.a, "And now?")
    assert "tools" not in llm.chat_requests[-1].body


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("task_queue")
def test_a_call_to_a_tool_that_is_not_offered_never_runs(world, llm, use_llm):
    use_llm(world.a)
    set_policy(world.a, "current_time", enabled=False)
    offered(world.a, agent_tools=["calculator", "current_time"])
    llm.script.tool_call("current_time", {"timezone": "UTC"}).reply("I cannot tell the time.")
    _, run = post_and_run(world.a, "What time is it?")
    assert run.status == "completed"
    with tenant_context(world.a.org):
        call = ToolCall.objects.get(run=run)
    assert (call.status, call.error_code, call.started_at) == ("failed", "TOOL_NOT_FOUND", None)
    answer = llm.chat_requests[-1].body["messages"][-1]
    assert answer["role"] == "tool" and "TOOL_NOT_FOUND" in answer["content"]
