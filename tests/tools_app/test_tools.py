"""Built-in tools through the tool loop, bad arguments and failures fed back to the model, and direct
tasks (a person runs a tool without the model)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from core.tenancy import tenant_context
from sessions_app.models import Message, MessageRole, RunStatus
from sessions_app.services.lifecycle import session_create, session_update
from sessions_app.services.messages import message_append
from sessions_app.services.runs import run_cancel
from tests.support.assertions import assert_error
from tests.support.runtime import (
    BackgroundWorker,
    event_types,
    events,
    post,
    post_and_run,
    reload,
    task_queue_fixture,  # noqa: F401
    wait_until,
)
from tools_app.models import ToolCall, ToolPolicy
from tools_app.registry import ToolSpec, register, unregister
from tools_app.services.tool_calls import direct_tasks_reap
from tools_app.tasks import tool_call_execute_task

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("task_queue")]


def give_tools(tenant, *names: str) -> None:
    with tenant_context(tenant.org):
        tenant.agent.tools = list(names)
        tenant.agent.save()


def tool_answers(request) -> list[dict]:
    return [json.loads(m["content"]) for m in request.body["messages"] if m["role"] == "tool"]


def test_calculator_through_the_loop(world, llm, use_llm):
    use_llm(world.a)
    give_tools(world.a, "calculator")
    llm.script.tool_call("calculator", {"expression": "2**10 + sqrt(16)"}).reply("1028.")
    _, run = post_and_run(world.a, "What is 2^10 + sqrt 16?")
    assert run.status == RunStatus.COMPLETED
    assert tool_answers(llm.chat_requests[1]) == [{"expression": "2**10 + sqrt(16)", "result": 1028}]


def test_current_time_through_the_loop(world, llm, use_llm):
    use_llm(world.a)
    give_tools(world.a, "current_time")
    llm.script.tool_call("current_time", {"timezone": "Asia/Tokyo"}).reply("It is late in Tokyo.")
    post_and_run(world.a, "Time in Tokyo?")
    (answer,) = tool_answers(llm.chat_requests[1])
    assert answer["timezone"] == "Asia/Tokyo" and answer["iso"].endswith("+09:00") and answer["weekday"]


def test_search_history_finds_only_this_organizations_conversations(world, llm, use_llm):
    use_llm(world.a)
    give_tools(world.a, "search_history")
    for tenant, text in (
        (world.a, "Our blue whale project ships in May."),
        (world.b, "Their blue whale plan."),
    ):
        with tenant_context(tenant.org):
            other = session_create(organization=tenant.org, agent=tenant.agent, name="planning")
            message_append(other, role=MessageRole.USER, content=text)
    llm.script.tool_call("search_history", {"query": "whale project", "limit": 5}).reply("It ships in May.")
    post_and_run(world.a, "When does it ship?")
    (answer,) = tool_answers(llm.chat_requests[1])
    assert answer["query"] == "whale project"
    assert [(r["session_name"], r["content"]) for r in answer["results"]] == [
        ("planning", "Our blue whale project ships in May.")
    ]


def test_invalid_arguments_go_back_to_the_model_which_corrects_itself(world, llm, use_llm):
    use_llm(world.a)
    give_tools(world.a, "calculator")
    llm.script.tool_call("calculator", {"expr": "1+1"}).tool_call("calculator", "{not json")
    llm.script.tool_call("calculator", {"expression": "1+1"}).reply("2.")
    _, run = post_and_run(world.a, "1+1?")
    assert run.status == RunStatus.COMPLETED
    first, second, third = (tool_answers(llm.chat_requests[i])[-1] for i in (1, 2, 3))
    assert first["error"]["code"] == "INVALID_TOOL_ARGS" and "expression" in first["error"]["message"]
    assert second["error"]["code"] == "INVALID_TOOL_ARGS" and "JSON" in second["error"]["message"]
    assert third == {"expression": "1+1", "result": 2}
    with tenant_context(world.a.org):
        calls = list(ToolCall.objects.filter(run=run).order_by("created_at"))
    assert [(c.status, c.error_code) for c in calls] == [
        ("failed", "INVALID_TOOL_ARGS"),
        ("failed", "INVALID_TOOL_ARGS"),
        ("completed", ""),
    ]
    assert all(c.started_at is None for c in calls[:2])  # never executed


def test_a_failing_tool_reports_to_the_model(world, llm, use_llm):
    use_llm(world.a)
    give_tools(world.a, "calculator")
    llm.script.tool_call("calculator", {"expression": "1/0"}).reply("Cannot divide by zero.")
    _, run = post_and_run(world.a, "1/0?")
    assert run.status == RunStatus.COMPLETED
    (answer,) = tool_answers(llm.chat_requests[1])
    assert answer["error"]["code"] == "TOOL_EXECUTION_FAILED" and answer["error"]["message"]
    assert "tool_call.failed" in event_types(world.a, run=run)


def test_a_model_that_keeps_asking_for_tools_is_stopped(world, llm, use_llm, settings):
    settings.RUN_MAX_TOOL_ROUNDS = 2
    use_llm(world.a)
    give_tools(world.a, "calculator")
    llm.script.tool_call("calculator", {"expression": "1"}).tool_call("calculator", {"expression": "2"})
    _, run = post_and_run(world.a, "Loop forever.")
    assert (run.status, run.error_code) == (RunStatus.FAILED, "LLM_ERROR")
    assert len(llm.chat_requests) == 2
    (error,) = [e.data for e in events(world.a, run=run) if e.type == "error.occurred"]
    assert error["details"] == {"limit": 2}


@pytest.fixture
def slow_tool():
    release = threading.Event()
    spec = register(
        ToolSpec(
            name="test_slow",
            description="Waits until released.",
            parameters={"type": "object", "properties": {}},
            handler=lambda ctx, args: release.wait(30) and {"late": True},
            timeout=0.3,
        )
    )
    yield spec
    release.set()
    unregister(spec.name)


def test_a_tool_that_takes_too_long_times_out(world, llm, use_llm, slow_tool):
    use_llm(world.a)
    give_tools(world.a, "test_slow")
    llm.script.tool_call("test_slow", {}).reply("That took too long.")
    _, run = post_and_run(world.a, "Be slow.")
    assert run.status == RunStatus.COMPLETED
    (answer,) = tool_answers(llm.chat_requests[1])
    assert answer["error"]["code"] == "TOOL_TIMEOUT"


@pytest.fixture
def blocking_tool():
    started, release = threading.Event(), threading.Event()
    spec = register(
        ToolSpec(
            name="test_blocking",
            description="Blocks until released.",
            parameters={"type": "object", "properties": {}},
            handler=lambda ctx, args: (started.set(), release.wait(30)) and {"done": True},
            timeout=60,
        )
    )
    yield started, release
    release.set()
    unregister(spec.name)


def test_a_tool_running_longer_than_the_lease_keeps_the_run_leased(
    world, llm, use_llm, blocking_tool, settings
):
    settings.RUN_LEASE_SECONDS = 1  # far shorter than the tool takes
    started, release = blocking_tool
    use_llm(world.a)
    give_tools(world.a, "test_blocking")
    llm.script.tool_call("test_blocking", {}).reply("Done.")
    _, run = post(world.a, "Take your time.")
    worker = BackgroundWorker(world.a, run)
    worker.start()
    assert started.wait(10)
    mark = reload(world.a, run).heartbeat_at
    # Without renewals the reaper would hand the run to a second worker while the tool still runs.
    wait_until(lambda: reload(world.a, run).heartbeat_at > mark, what="a lease renewal during the tool")
    assert reload(world.a, run).status == RunStatus.RUNNING
    release.set()
    worker.finish()
    assert reload(world.a, run).status == RunStatus.COMPLETED


def test_a_cancel_while_a_tool_runs_stops_the_run_without_waiting_for_the_tool(
    world, llm, use_llm, blocking_tool
):
    started, release = blocking_tool
    use_llm(world.a)
    give_tools(world.a, "test_blocking")
    llm.script.tool_call("test_blocking", {})
    _, run = post(world.a, "Take your time.")
    worker = BackgroundWorker(world.a, run)
    worker.start()
    assert started.wait(10)
    with tenant_context(world.a.org):
        run_cancel(reload(world.a, run))
    worker.finish()  # while the tool is still blocked: the worker stopped waiting for it
    assert not release.is_set()
    run = reload(world.a, run)
    assert run.status == RunStatus.CANCELLED
    with tenant_context(world.a.org):
        call = ToolCall.objects.get(run=run)
        answer = Message.objects.get(tool_call=call, role=MessageRole.TOOL)
    assert call.status == "failed" and call.error_code == "TOOL_EXECUTION_FAILED"
    assert "cancelled" in call.error_message
    assert json.loads(answer.content)["error"]["code"] == "TOOL_EXECUTION_FAILED"
    assert [t for t in event_types(world.a, run=run) if t.startswith("run.")][-1] == "run.cancelled"
    assert len(llm.chat_requests) == 1  # the model was not called with the abandoned tool's result
    # The session takes the next message, and the model sees the cancelled call answered.
    llm.script.reply("Ready again.")
    release.set()
    _, second = post_and_run(world.a, "Again.")
    assert second.status == RunStatus.COMPLETED
    (answer,) = tool_answers(llm.chat_requests[-1])
    assert answer["error"]["code"] == "TOOL_EXECUTION_FAILED" and "cancelled" in answer["error"]["message"]


# --- direct tasks ------------------------------------------------------------------------------------


def tasks_url(tenant, session=None) -> str:
    return tenant.url(f"sessions/{(session or tenant.session).pk}/tasks/")


def execute_dispatched(task_queue, tenant) -> None:
    """Play the queue worker for the direct tasks dispatched so far."""
    for func, args in task_queue.tasks:
        if func == "tools_app.tasks.tool_call_execute_task":
            tool_call_execute_task(*args)


def test_an_auto_task_runs_and_is_recorded_in_the_session(world, client_for, task_queue, llm, use_llm):
    r = client_for(world.a.member).post(
        tasks_url(world.a), {"tool": "calculator", "arguments": {"expression": "6*7"}}, format="json"
    )
    assert r.status_code == 202, r.content
    body = r.json()
    assert body["status"] == "approved" and body["run"] is None and body["decided_by"] == "acme-member"
    assert task_queue.tasks == [("tools_app.tasks.tool_call_execute_task", (body["id"], world.a.org.pk))]
    execute_dispatched(task_queue, world.a)
    with tenant_context(world.a.org):
        call = ToolCall.objects.get(pk=body["id"])
        message = Message.objects.get(tool_call=call)
    assert call.status == "completed" and call.result == {"expression": "6*7", "result": 42}
    assert message.role == "tool" and json.loads(message.content)["result"] == 42
    assert message.metadata["tool_name"] == "calculator"
    types = event_types(world.a)
    assert (
        types.index("tool_call.approved")
        < types.index("tool_call.completed")
        < types.index("message.created")
    )

    execute_dispatched(task_queue, world.a)  # a duplicate task delivery
    with tenant_context(world.a.org):
        assert Message.objects.filter(tool_call=call).count() == 1

    use_llm(world.a)  # the model hears about it on the next turn
    post_and_run(world.a, "What did I just compute?")
    note = llm.chat_requests[-1].body["messages"][-2]
    assert note["role"] == "user" and "calculator" in note["content"] and "42" in note["content"]


def test_a_manual_task_waits_for_approval(world, client_for, task_queue):
    with tenant_context(world.a.org):
        session_update(world.a.session, config={"approval_mode": "manual"})
    r = client_for(world.a.member).post(
        tasks_url(world.a), {"tool": "current_time", "arguments": {}}, format="json"
    )
    assert r.status_code == 202 and r.json()["status"] == "pending" and r.json()["expires_at"]
    assert task_queue.tasks == []
    call_id = r.json()["id"]
    approved = client_for(world.a.admin).post(
        world.a.url(f"tool-calls/{call_id}/approve/"), {}, format="json"
    )
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    execute_dispatched(task_queue, world.a)
    with tenant_context(world.a.org):
        call = ToolCall.objects.get(pk=call_id)
        assert call.status == "completed" and call.decided_by == world.a.admin
        assert Message.objects.filter(tool_call=call, role="tool").exists()


def test_a_rejected_task_is_recorded_and_never_runs(world, client_for, task_queue):
    with tenant_context(world.a.org):
        session_update(world.a.session, config={"approval_mode": "manual"})
    call_id = (
        client_for(world.a.member)
        .post(tasks_url(world.a), {"tool": "current_time"}, format="json")
        .json()["id"]
    )
    r = client_for(world.a.member).post(
        world.a.url(f"tool-calls/{call_id}/reject/"), {"reason": "Not now."}, format="json"
    )
    assert r.json()["status"] == "rejected" and task_queue.tasks == []
    with tenant_context(world.a.org):
        message = Message.objects.get(tool_call_id=call_id)
    assert "Not now." in json.loads(message.content)["error"]["message"]


def test_denied_and_invalid_tasks_are_refused_with_the_reason(world, client_for, task_queue):
    with tenant_context(world.a.org):
        ToolPolicy.objects.create(organization=world.a.org, tool_name="current_time", policy="deny")
    client = client_for(world.a.member)
    denied = client.post(tasks_url(world.a), {"tool": "current_time"}, format="json")
    assert denied.status_code == 201 and (denied.json()["status"], denied.json()["error_code"]) == (
        "rejected",
        "TOOL_DENIED",
    )
    invalid = client.post(tasks_url(world.a), {"tool": "calculator", "arguments": {"x": 1}}, format="json")
    assert invalid.status_code == 201 and invalid.json()["error_code"] == "INVALID_TOOL_ARGS"
    assert task_queue.tasks == []
    with tenant_context(world.a.org):
        assert Message.objects.filter(role="tool").count() == 2  # both outcomes are on the record
    assert_error(client.post(tasks_url(world.a), {"tool": "teleport"}, format="json"), 404, "TOOL_NOT_FOUND")


def test_who_may_run_a_task(world, client_for, task_queue):
    body = {"tool": "calculator", "arguments": {"expression": "1"}}
    assert_error(
        client_for(world.a.viewer).post(tasks_url(world.a), body, format="json"), 403, "PERMISSION_DENIED"
    )
    with tenant_context(world.a.org):
        admins = session_create(organization=world.a.org, agent=world.a.agent, owner=world.a.admin)
    r = client_for(world.a.member).post(tasks_url(world.a, admins), body, format="json")
    assert_error(r, 403, "PERMISSION_DENIED")
    assert client_for(world.a.admin).post(tasks_url(world.a), body, format="json").status_code == 202
    r = client_for(world.b.admin).post(
        world.b.url(f"sessions/{world.a.session.pk}/tasks/"), body, format="json"
    )
    assert_error(r, 404, "SESSION_NOT_FOUND")


def test_an_agent_in_manual_mode_makes_direct_tasks_wait_for_approval(world, client_for, task_queue):
    """Direct tasks follow the same policy as the model: the agent's approval mode applies too."""
    with tenant_context(world.a.org):
        world.a.agent.approval_mode = "manual"
        world.a.agent.save(update_fields=["approval_mode"])
    r = client_for(world.a.member).post(
        tasks_url(world.a), {"tool": "calculator", "arguments": {"expression": "2+2"}}, format="json"
    )
    assert r.status_code == 202 and r.json()["status"] == "pending"
    assert task_queue.tasks == []


def test_only_admins_may_run_code_as_a_direct_task(world, client_for, task_queue, settings):
    """``python`` and ``shell`` use execution sessions, which are for organization admins only: a member's
    direct task is refused before anything is stored; an admin's waits for approval (their default)."""
    settings.ENABLE_EXEC_SESSIONS = True
    body = {"tool": "python", "arguments": {"code": "print(1)"}}
    for tool in ("python", "shell"):
        refused = client_for(world.a.member).post(tasks_url(world.a), {**body, "tool": tool}, format="json")
        assert assert_error(refused, 403, "PERMISSION_DENIED")["details"] == {
            "tool": tool,
            "required_role": "admin",
        }
    with tenant_context(world.a.org):
        assert not ToolCall.objects.exists()
    allowed = client_for(world.a.admin).post(tasks_url(world.a), body, format="json")
    assert allowed.status_code == 202 and allowed.json()["status"] == "pending"
    assert task_queue.tasks == []


def test_a_direct_task_whose_queue_task_was_lost_is_dispatched_again_and_runs_once(
    world, client_for, task_queue
):
    body = {"tool": "calculator", "arguments": {"expression": "6*7"}}
    call_id = client_for(world.a.member).post(tasks_url(world.a), body, format="json").json()["id"]
    task_queue.tasks.clear()  # the task was lost on its way to a worker
    assert direct_tasks_reap() == 0  # too soon: it may still be on its way
    with tenant_context(world.a.org):
        ToolCall.objects.filter(pk=call_id).update(decided_at=timezone.now() - timedelta(minutes=5))
    assert direct_tasks_reap() == 1
    assert task_queue.tasks == [("tools_app.tasks.tool_call_execute_task", (call_id, world.a.org.pk))]
    execute_dispatched(task_queue, world.a)
    execute_dispatched(task_queue, world.a)  # dispatched twice by a slow reaper: still runs once
    with tenant_context(world.a.org):
        call = ToolCall.objects.get(pk=call_id)
        assert call.status == "completed" and call.result["result"] == 42
        assert Message.objects.filter(tool_call=call).count() == 1
    assert direct_tasks_reap() == 0


def test_a_direct_task_whose_worker_died_fails_and_is_answered(world, client_for, task_queue):
    body = {"tool": "calculator", "arguments": {"expression": "1"}}
    call_id = client_for(world.a.member).post(tasks_url(world.a), body, format="json").json()["id"]
    task_queue.tasks.clear()
    with tenant_context(world.a.org):  # a worker marked it started, then died
        ToolCall.objects.filter(pk=call_id).update(started_at=timezone.now())
    assert direct_tasks_reap() == 0  # it may still be running
    with tenant_context(world.a.org):
        ToolCall.objects.filter(pk=call_id).update(started_at=timezone.now() - timedelta(minutes=5))
    assert direct_tasks_reap() == 1
    execute_dispatched(task_queue, world.a)
    with tenant_context(world.a.org):
        call = ToolCall.objects.get(pk=call_id)
        assert (call.status, call.error_code) == ("failed", "TOOL_EXECUTION_FAILED")
        message = Message.objects.get(tool_call=call)
    assert "not run twice" in json.loads(message.content)["error"]["message"]
    assert "tool_call.failed" in event_types(world.a)


@pytest.mark.parametrize("arguments", [[1, 2], 5, True, 1.5, "[1]", '{"expression": NaN}'])
def test_a_task_whose_arguments_are_not_an_object_is_recorded_as_invalid(world, client_for, arguments):
    r = client_for(world.a.member).post(
        tasks_url(world.a), {"tool": "calculator", "arguments": arguments}, format="json"
    )
    assert r.status_code == 201, r.content
    assert (r.json()["status"], r.json()["error_code"]) == ("failed", "INVALID_TOOL_ARGS")


def test_an_ended_session_takes_no_task_and_its_waiting_tasks_never_run(world, client_for, task_queue):
    with tenant_context(world.a.org):
        session_update(world.a.session, config={"approval_mode": "manual"})
    client = client_for(world.a.member)
    waiting = client.post(tasks_url(world.a), {"tool": "current_time"}, format="json").json()
    approved = client.post(tasks_url(world.a), {"tool": "current_time"}, format="json").json()
    client_for(world.a.admin).post(world.a.url(f"tool-calls/{approved['id']}/approve/"), {}, format="json")
    ended = client.post(world.a.url(f"sessions/{world.a.session.pk}/end/"), {}, format="json")
    assert ended.status_code == 200, ended.content

    with tenant_context(world.a.org):
        waiting_call, approved_call = (ToolCall.objects.get(pk=c["id"]) for c in (waiting, approved))
        assert (waiting_call.status, waiting_call.reason) == ("rejected", "The session ended.")
        assert (approved_call.status, approved_call.error_code) == ("failed", "TOOL_EXECUTION_FAILED")
        answered = Message.objects.filter(role="tool", tool_call__in=[waiting_call, approved_call])
        assert answered.count() == 2  # both outcomes are on the session's record
    execute_dispatched(task_queue, world.a)  # the approval's queue task comes too late
    assert reload(world.a, approved_call).started_at is None
    late = client_for(world.a.admin).post(
        world.a.url(f"tool-calls/{waiting['id']}/approve/"), {}, format="json"
    )
    assert late.json()["status"] == "rejected"

    refused = client.post(tasks_url(world.a), {"tool": "current_time"}, format="json")
    assert_error(refused, 400, "INVALID_STATE")
    with tenant_context(world.a.org):
        assert ToolCall.objects.count() == 2


def test_a_code_task_while_execution_sessions_are_off_says_so(world, client_for, settings):
    settings.ENABLE_EXEC_SESSIONS = False
    for user in (world.a.admin, world.a.member):
        r = client_for(user).post(
            tasks_url(world.a), {"tool": "python", "arguments": {"code": "print(1)"}}, format="json"
        )
        assert_error(r, 403, "EXEC_SESSIONS_DISABLED")
    with tenant_context(world.a.org):
        assert not ToolCall.objects.exists() and not Message.objects.filter(role="tool").exists()


def test_a_tool_result_a_database_cannot_store_is_kept_storable(world, client_for, task_queue):
    """A tool's output may hold a NUL character or NaN (PostgreSQL refused to store either)."""
    register(
        ToolSpec(
            name="test_raw_output",
            description="Returns what a program printed.",
            parameters={"type": "object", "properties": {}},
            handler=lambda ctx, args: {"stdout": "a\u0000b", "ratio": float("nan")},
        )
    )
    try:
        body = client_for(world.a.member).post(tasks_url(world.a), {"tool": "test_raw_output"}, format="json")
        execute_dispatched(task_queue, world.a)
    finally:
        unregister("test_raw_output")
    call = reload(world.a, ToolCall(pk=body.json()["id"]))
    assert (call.status, call.result) == ("completed", {"stdout": "a\ufffdb", "ratio": None})
