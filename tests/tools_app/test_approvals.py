"""Human approval of tool calls, end to end with the test LLM server and the real executor."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from core.access import Access
from core.tenancy import tenant_context
from sessions_app.models import Run, RunStatus, RuntimeState
from sessions_app.services.lifecycle import session_create
from sessions_app.services.runs import run_claim, run_require_action, runs_reap
from tests.conftest import make_user
from tests.support.assertions import assert_error
from tests.support.runtime import (
    event_types,
    events,
    post,
    post_and_run,
    reload,
    run_now,
    task_queue_fixture,  # noqa: F401
)
from tools_app.models import ToolCall, ToolPolicy
from tools_app.registry import ToolSpec, register, unregister
from tools_app.services.tool_calls import (
    arguments_hash,
    tool_call_create,
    tool_call_decide,
    tool_calls_expire,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("task_queue")]


@pytest.fixture
def side_effects():
    """A registered test tool whose handler counts how many times it really ran."""
    ran: list[dict] = []
    spec = register(
        ToolSpec(
            name="test_transfer",
            description="Moves money (counts invocations).",
            parameters={
                "type": "object",
                "properties": {"amount": {"type": "integer"}},
                "required": ["amount"],
            },
            handler=lambda ctx, args: ran.append(args) or {"moved": args["amount"]},
            side_effect="mutating",
            default_policy="manual",
        )
    )
    yield ran
    unregister(spec.name)


@pytest.fixture
def manual(world, use_llm, side_effects):
    """Organization A's agent may use the calculator and the test tool, and asks a person for each call."""
    use_llm(world.a)
    with tenant_context(world.a.org):
        world.a.agent.tools = ["calculator", "test_transfer"]
        world.a.agent.approval_mode = "manual"
        world.a.agent.save()
    return world.a


def ask(tenant, llm, *calls, question="Please compute.") -> tuple[Run, list[ToolCall]]:
    llm.script.tool_calls(*calls)
    _, run = post_and_run(tenant, question)
    with tenant_context(tenant.org):
        return run, list(ToolCall.objects.filter(run=run).order_by("created_at"))


def decide(client, tenant, call, verdict: str, **body):
    return client.post(tenant.url(f"tool-calls/{call.pk}/{verdict}/"), body, format="json")


def tool_messages(request) -> list[dict]:
    return [m for m in request.body["messages"] if m["role"] == "tool"]


def test_a_manual_call_waits_for_a_person_without_a_worker(world, llm, manual, client_for):
    run, (call,) = ask(manual, llm, ("calculator", {"expression": "6*7"}))
    assert run.status == RunStatus.REQUIRES_ACTION and run.lease_expires_at is None
    assert call.status == "pending" and call.requires_approval and call.expires_at > timezone.now()
    assert reload(manual, manual.session).runtime_state == RuntimeState.AWAITING_APPROVAL
    pending = events(manual, types=("tool_call.pending",), run=run)[0].data
    assert pending["id"] == str(call.pk) and pending["arguments"] == {"expression": "6*7"}
    tail = event_types(manual, run=run)[-3:]
    assert tail == ["run.requires_action", "worker.completed", "session.updated"]
    assert events(manual, types=("worker.completed",), run=run)[-1].data["released"] is True
    inbox = client_for(manual.admin).get(manual.url("tool-calls/?status=pending")).json()["results"]
    assert [c["id"] for c in inbox] == [str(call.pk)]


def test_approval_requeues_the_run_and_the_result_reaches_the_model(
    world, llm, manual, client_for, task_queue
):
    run, (call,) = ask(manual, llm, ("calculator", {"expression": "6*7"}))
    r = decide(client_for(manual.member), manual, call, "approve")
    assert r.status_code == 200, r.content
    assert r.json()["status"] == "approved" and r.json()["decided_by"] == "acme-member"
    assert reload(manual, run).status == RunStatus.QUEUED
    assert task_queue.run_ids() == [str(run.pk), str(run.pk)]  # dispatched again by the decision

    llm.script.reply("It is 42.")
    run = run_now(manual, run)
    assert run.status == RunStatus.COMPLETED and run.attempts == 1  # counted afresh after the wait
    (answer,) = tool_messages(llm.chat_requests[-1])
    assert answer["tool_call_id"] == call.call_id and json.loads(answer["content"])["result"] == 42
    assert reload(manual, call).status == "completed"
    assert reload(manual, manual.session).runtime_state == RuntimeState.IDLE


def test_a_rejection_reason_reaches_the_model_and_the_conversation_continues(world, llm, manual, client_for):
    run, (call,) = ask(manual, llm, ("test_transfer", {"amount": 100}))
    r = decide(client_for(manual.admin), manual, call, "reject", reason="Budget is frozen.")
    assert r.json()["status"] == "rejected" and r.json()["reason"] == "Budget is frozen."
    llm.script.reply("Understood, I will not move the money.")
    run = run_now(manual, run)
    assert run.status == RunStatus.COMPLETED
    (answer,) = tool_messages(llm.chat_requests[-1])
    assert "Budget is frozen." in answer["content"] and "APPROVAL_REJECTED" in answer["content"]
    assert reload(manual, call).started_at is None
    llm.script.reply("Anything else?")
    _, after = post_and_run(manual, "Thanks.")
    assert after.status == RunStatus.COMPLETED


def test_an_expired_approval_lets_the_run_continue(world, llm, manual):
    with tenant_context(manual.org):
        manual.org.approval_timeout_seconds = 90
        manual.org.save()
    run, (call,) = ask(manual, llm, ("calculator", {"expression": "1+1"}))
    assert timedelta(seconds=85) < call.expires_at - call.created_at <= timedelta(seconds=91)
    assert tool_calls_expire() == 0  # not yet
    with tenant_context(manual.org):
        ToolCall.objects.filter(pk=call.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert tool_calls_expire() == 1
    call = reload(manual, call)
    assert (call.status, call.error_code) == ("failed", "APPROVAL_TIMEOUT")
    assert reload(manual, run).status == RunStatus.QUEUED
    llm.script.reply("Nobody approved; let us move on.")
    assert run_now(manual, run).status == RunStatus.COMPLETED
    (answer,) = tool_messages(llm.chat_requests[-1])
    assert "APPROVAL_TIMEOUT" in answer["content"]
    assert reload(manual, manual.session).runtime_state == RuntimeState.IDLE


def test_parallel_calls_are_decided_one_by_one(world, llm, manual, client_for, task_queue):
    run, (first, second) = ask(
        manual, llm, ("calculator", {"expression": "1+1"}), ("test_transfer", {"amount": 5})
    )
    assert [c.status for c in (first, second)] == ["pending", "pending"]
    client = client_for(manual.member)
    assert decide(client, manual, first, "approve").status_code == 200
    assert reload(manual, run).status == RunStatus.REQUIRES_ACTION  # still waiting for the second
    assert task_queue.run_ids() == [str(run.pk)]
    assert decide(client, manual, second, "reject", reason="No.").status_code == 200
    assert reload(manual, run).status == RunStatus.QUEUED
    llm.script.reply("2, and no transfer.")
    assert run_now(manual, run).status == RunStatus.COMPLETED
    answers = tool_messages(llm.chat_requests[-1])
    assert [a["tool_call_id"] for a in answers] == [first.call_id, second.call_id]
    assert json.loads(answers[0]["content"])["result"] == 2 and "No." in answers[1]["content"]


def test_deciding_twice_is_harmless(world, llm, manual, client_for, task_queue):
    run, (call,) = ask(manual, llm, ("calculator", {"expression": "1+1"}))
    client = client_for(manual.member)
    decide(client, manual, call, "approve")
    count = len(events(manual))
    again = decide(client, manual, call, "approve")
    late_reject = decide(client_for(manual.admin), manual, call, "reject", reason="Too late.")
    assert again.status_code == late_reject.status_code == 200
    assert again.json()["status"] == late_reject.json()["status"] == "approved"
    assert late_reject.json()["reason"] == ""
    assert len(events(manual)) == count
    assert task_queue.run_ids() == [str(run.pk), str(run.pk)]


def test_who_may_decide(world, llm, manual, client_for, issue_key):
    _, (call,) = ask(manual, llm, ("calculator", {"expression": "1+1"}))
    assert_error(decide(client_for(world.b.admin), world.b, call, "approve"), 404, "TOOL_CALL_NOT_FOUND")
    assert_error(decide(client_for(manual.viewer), manual, call, "approve"), 403, "PERMISSION_DENIED")
    with tenant_context(manual.org):
        other_member = session_create(organization=manual.org, agent=manual.agent, owner=manual.admin)
        manual.session = other_member  # the next call is in a session the member does not own
    _, (admins_call,) = ask(manual, llm, ("calculator", {"expression": "2+2"}))
    assert_error(decide(client_for(world.a.member), manual, admins_call, "approve"), 403, "PERMISSION_DENIED")
    without_scope = client_for(key=issue_key(manual, scopes=["read", "write"]))
    assert_error(decide(without_scope, manual, admins_call, "approve"), 403, "PERMISSION_DENIED")
    assert reload(manual, admins_call).status == "pending"
    with_scope = client_for(key=issue_key(manual, scopes=["read", "write", "approve"]))  # the admin's key
    assert decide(with_scope, manual, admins_call, "reject").json()["status"] == "rejected"
    assert decide(client_for(manual.owner), manual, call, "approve").json()["decided_by"] == "acme-owner"


def test_arguments_changed_after_approval_are_never_executed(world, llm, manual, client_for, side_effects):
    run, (call,) = ask(manual, llm, ("test_transfer", {"amount": 10}))
    decide(client_for(manual.member), manual, call, "approve")
    with tenant_context(manual.org):
        ToolCall.objects.filter(pk=call.pk).update(arguments={"amount": 10_000})
    llm.script.reply("The transfer did not happen.")
    assert run_now(manual, run).status == RunStatus.COMPLETED
    assert side_effects == []
    call = reload(manual, call)
    assert (call.status, call.error_code) == ("failed", "APPROVAL_REJECTED")
    (answer,) = tool_messages(llm.chat_requests[-1])
    assert "changed after approval" in answer["content"]


def test_an_approved_side_effect_runs_exactly_once(world, llm, manual, client_for, side_effects):
    run, (call,) = ask(manual, llm, ("test_transfer", {"amount": 7}))
    decide(client_for(manual.member), manual, call, "approve")
    llm.script.reply("Moved 7.")
    assert run_now(manual, run).status == RunStatus.COMPLETED
    assert side_effects == [{"amount": 7}]
    assert run_now(manual, run).status == RunStatus.COMPLETED  # a duplicate task does nothing
    assert side_effects == [{"amount": 7}]


def test_a_worker_killed_after_approval_does_not_repeat_the_side_effect(
    world, llm, manual, client_for, side_effects
):
    run, (call,) = ask(manual, llm, ("test_transfer", {"amount": 7}))
    decide(client_for(manual.member), manual, call, "approve")
    # A worker took the run, marked the call started, and was killed before it recorded the outcome.
    with tenant_context(manual.org):
        assert run_claim(run.pk, "host:doomed") is not None
        ToolCall.objects.filter(pk=call.pk).update(started_at=timezone.now())
        Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert runs_reap() == 1
    llm.script.reply("I could not confirm the transfer.")
    run = run_now(manual, run)
    assert run.status == RunStatus.COMPLETED and run.attempts == 2
    assert side_effects == []  # the retry never runs it again
    call = reload(manual, call)
    assert (call.status, call.error_code) == ("failed", "TOOL_EXECUTION_FAILED")
    (answer,) = tool_messages(llm.chat_requests[-1])
    assert "not run twice" in answer["content"]


def test_the_inbox_spans_the_organizations_sessions(world, llm, manual, client_for, use_llm):
    _, (first,) = ask(manual, llm, ("calculator", {"expression": "1"}))
    first_session = manual.session
    with tenant_context(manual.org):
        manual.session = session_create(organization=manual.org, agent=manual.agent, owner=manual.member)
    second_run, (second,) = ask(manual, llm, ("calculator", {"expression": "2"}))
    assert decide(client_for(manual.member), manual, second, "reject").status_code == 200
    llm.script.reply("Fine.")
    run_now(manual, second_run)
    _, (third,) = ask(manual, llm, ("calculator", {"expression": "3"}))
    use_llm(world.b)
    with tenant_context(world.b.org):
        world.b.agent.tools, world.b.agent.approval_mode = ["calculator"], "manual"
        world.b.agent.save()
    ask(world.b, llm, ("calculator", {"expression": "4"}))
    inbox = client_for(manual.viewer).get(manual.url("tool-calls/?status=pending")).json()["results"]
    assert {c["id"] for c in inbox} == {str(first.pk), str(third.pk)}
    assert {c["session"] for c in inbox} == {str(first_session.pk), str(manual.session.pk)}


def test_django_admin_actions_decide_through_the_same_service(world, llm, manual, use_llm):
    run, (first, second) = ask(
        manual, llm, ("calculator", {"expression": "1+1"}), ("test_transfer", {"amount": 1})
    )
    staff = Client()
    manual.admin.is_staff = True
    manual.admin.save()
    staff.force_login(manual.admin)
    url = "/admin/tools_app/toolcall/"
    r = staff.post(url, {"action": "approve_calls", "_selected_action": [str(first.pk)]})
    assert r.status_code == 302
    call = reload(manual, first)
    assert call.status == "approved" and call.decided_by == manual.admin and "admin" in call.reason
    assert reload(manual, run).status == RunStatus.REQUIRES_ACTION
    staff.post(url, {"action": "reject_calls", "_selected_action": [str(second.pk)]})
    assert reload(manual, second).status == "rejected"
    assert reload(manual, run).status == RunStatus.QUEUED
    assert "tool_call.rejected" in event_types(manual, run=run)

    # An organization admin's selection never reaches another organization's calls.
    use_llm(world.b)
    with tenant_context(world.b.org):
        world.b.agent.tools, world.b.agent.approval_mode = ["calculator"], "manual"
        world.b.agent.save()
    _, (foreign,) = ask(world.b, llm, ("calculator", {"expression": "4"}))
    staff.post(url, {"action": "approve_calls", "_selected_action": [str(foreign.pk)]})
    assert reload(world.b, foreign).status == "pending"


def test_the_django_admin_change_form_cannot_decide_or_rewrite_a_call(world, llm, manual):
    run, (call,) = ask(manual, llm, ("calculator", {"expression": "1+1"}))
    manual.admin.is_staff = True
    manual.admin.save()
    for user in (manual.admin, make_user("root", is_staff=True, is_superuser=True)):
        staff = Client()
        staff.force_login(user)
        url = f"/admin/tools_app/toolcall/{call.pk}/change/"
        page = staff.get(url)
        assert page.status_code == 200
        html = page.content.decode()
        assert 'name="status"' not in html and 'name="tool_name"' not in html
        assert 'name="arguments"' not in html and "1+1" in html  # shown, not editable
        edited = {
            "organization": str(manual.org.pk),
            "session": str(call.session_id),
            "run": str(call.run_id),
            "tool_name": "test_transfer",
            "arguments": json.dumps({"amount": 1000}),
            "status": "approved",
            "_save": "Save",
        }
        assert staff.post(url, edited).status_code == 403
        unchanged = reload(manual, call)
        assert (unchanged.status, unchanged.tool_name, unchanged.arguments) == (
            "pending",
            "calculator",
            {"expression": "1+1"},
        )
        assert unchanged.decided_by is None and unchanged.approved_hash == ""
        assert staff.get("/admin/tools_app/toolcall/add/").status_code == 403
        assert staff.post(f"/admin/tools_app/toolcall/{call.pk}/delete/", {"post": "yes"}).status_code == 403
        bulk = {"action": "delete_selected", "_selected_action": [str(call.pk)], "post": "yes"}
        staff.post("/admin/tools_app/toolcall/", bulk)
        assert reload(manual, call).status == "pending"  # a waiting call is not deleted either way
    assert reload(manual, run).status == RunStatus.REQUIRES_ACTION
    # The decision actions still work on the page the change form is read from.
    staff.post("/admin/tools_app/toolcall/", {"action": "approve_calls", "_selected_action": [str(call.pk)]})
    assert reload(manual, call).status == "approved"


def test_approval_rounds_do_not_use_up_the_retry_attempts(world, llm, manual, client_for, settings):
    settings.RUN_MAX_ATTEMPTS = 2
    run, (call,) = ask(manual, llm, ("calculator", {"expression": "1+1"}))
    for round_ in range(3):  # the model asks for one more approval each time
        decide(client_for(manual.member), manual, call, "approve")
        llm.script.tool_call("calculator", {"expression": f"{round_}+1"})
        run = run_now(manual, run)
        assert run.status == RunStatus.REQUIRES_ACTION, run.error_message
        with tenant_context(manual.org):
            call = ToolCall.objects.get(run=run, status="pending")
    decide(client_for(manual.member), manual, call, "approve")
    llm.script.reply("Done at last.")
    assert run_now(manual, run).status == RunStatus.COMPLETED


def test_decisions_made_before_the_worker_lets_go_still_wake_the_run(world, llm, manual, task_queue):
    """Both calls decided while the worker is still between recording them and releasing the run."""
    _, run = post(manual, "Two things, please.")
    with tenant_context(manual.org):
        run = run_claim(run.pk, "host:1")
        access = Access(organization=manual.org, role="member", user=manual.member)
        for expression in ("1+1", "2+2"):
            call = tool_call_create(
                session=manual.session,
                name="calculator",
                raw_arguments={"expression": expression},
                policy="manual",
                run=run,
                call_id=f"call_{expression}",
            )
            tool_call_decide(call, approve=True, access=access)
        assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING  # nothing to requeue yet
        run = run_require_action(run)
    assert run.status == RunStatus.QUEUED  # no decision is left to wake it, so it does not wait
    assert task_queue.run_ids() == [str(run.pk), str(run.pk)]


def test_a_worker_lost_while_recording_the_calls_leaves_no_call_unanswered(world, llm, use_llm):
    """The reply asking for two calls was stored, and the worker died after recording only the first:
    the retry records the second, answers both, and the model gets a well-formed history."""
    from sessions_app.models import MessageRole, MessageStatus
    from sessions_app.services.messages import message_append

    use_llm(world.a)
    with tenant_context(world.a.org):
        world.a.agent.tools = ["calculator"]
        world.a.agent.save()
    _, run = post(world.a, "Two sums, please.")
    asked = [
        {"id": "call_a", "name": "calculator", "arguments": '{"expression": "6*7"}'},
        {"id": "call_b", "name": "calculator", "arguments": '{"expression": "1+1"}'},
    ]
    with tenant_context(world.a.org):
        claimed = run_claim(run.pk, "host:doomed")
        reply = message_append(
            world.a.session,
            role=MessageRole.ASSISTANT,
            status=MessageStatus.COMPLETE,
            run=claimed,
            metadata={"tool_calls": asked},
        )
        tool_call_create(
            session=world.a.session,
            name="calculator",
            raw_arguments=asked[0]["arguments"],
            policy="auto",
            run=claimed,
            message=reply,
            call_id="call_a",
        )
        Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert runs_reap() == 1

    llm.script.reply("42 and 2.")
    run = run_now(world.a, run)
    assert run.status == RunStatus.COMPLETED and run.attempts == 2
    with tenant_context(world.a.org):
        calls = {c.call_id: c for c in ToolCall.objects.filter(run=run)}
    assert sorted(calls) == ["call_a", "call_b"]
    assert {c.status for c in calls.values()} == {"completed"}
    answered = tool_messages(llm.chat_requests[-1])
    answers = {m["tool_call_id"]: json.loads(m["content"])["result"] for m in answered}
    assert answers == {"call_a": 42, "call_b": 2}


# --- settings and deadlines that change while a call waits ------------------------------------------------


def deny_tool(tenant, name: str, **setting) -> None:
    """An organization admin turns a tool off (or denies it) in the organization's tool settings."""
    with tenant_context(tenant.org):
        ToolPolicy.objects.update_or_create(
            organization=tenant.org, tool_name=name, defaults={"enabled": False, "policy": "deny", **setting}
        )


@pytest.mark.parametrize("setting", [{"enabled": False, "policy": "manual"}, {"enabled": True}])
def test_a_tool_turned_off_while_its_call_waits_cannot_be_approved(
    world, llm, manual, client_for, side_effects, setting
):
    run, (call,) = ask(manual, llm, ("test_transfer", {"amount": 5}))
    deny_tool(manual, "test_transfer", **setting)
    approved = decide(client_for(manual.member), manual, call, "approve")
    assert approved.status_code == 200
    assert (approved.json()["status"], approved.json()["error_code"]) == ("rejected", "TOOL_DENIED")
    assert reload(manual, run).status == RunStatus.QUEUED  # the run goes on, and the model hears why
    llm.script.reply("That tool is off now.")
    assert run_now(manual, run).status == RunStatus.COMPLETED
    assert side_effects == []
    (answer,) = tool_messages(llm.chat_requests[-1])
    assert "TOOL_DENIED" in answer["content"]


def test_a_tool_turned_off_after_approval_does_not_run(world, llm, manual, client_for, side_effects):
    run, (call,) = ask(manual, llm, ("test_transfer", {"amount": 5}))
    assert decide(client_for(manual.member), manual, call, "approve").json()["status"] == "approved"
    deny_tool(manual, "test_transfer")  # before a worker takes the run again
    llm.script.reply("It did not run.")
    assert run_now(manual, run).status == RunStatus.COMPLETED
    assert side_effects == []
    call = reload(manual, call)
    assert (call.status, call.error_code, call.started_at) == ("failed", "TOOL_DENIED", None)


def test_approving_after_the_deadline_expires_the_call_instead(world, llm, manual, client_for, side_effects):
    """The expiry task runs once a minute: a decision that comes after the deadline but before the task
    finds the call expired, as the task would have."""
    run, (call,) = ask(manual, llm, ("test_transfer", {"amount": 5}))
    with tenant_context(manual.org):
        ToolCall.objects.filter(pk=call.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    late = decide(client_for(manual.member), manual, call, "approve")
    assert late.status_code == 200
    assert (late.json()["status"], late.json()["error_code"]) == ("failed", "APPROVAL_TIMEOUT")
    assert reload(manual, run).status == RunStatus.QUEUED
    llm.script.reply("Too late.")
    assert run_now(manual, run).status == RunStatus.COMPLETED
    assert side_effects == [] and tool_calls_expire() == 0


def test_an_approval_binds_to_the_arguments_as_the_database_stores_them(
    world, llm, manual, client_for, side_effects
):
    """PostgreSQL's jsonb gives ``1e16`` back as the integer 10000000000000000: the approved hash still
    matches what is stored, so the approved call runs."""
    assert arguments_hash({"amount": 1e16}) == arguments_hash({"amount": 10_000_000_000_000_000})
    assert arguments_hash({"amount": [2.0]}) == arguments_hash({"amount": [2]})
    assert arguments_hash({"amount": 2.5}) != arguments_hash({"amount": 2})
    run, (call,) = ask(manual, llm, ("test_transfer", '{"amount": 1e16}'))
    assert decide(client_for(manual.member), manual, call, "approve").json()["status"] == "approved"
    llm.script.reply("Moved.")
    assert run_now(manual, run).status == RunStatus.COMPLETED
    assert reload(manual, call).status == "completed"
    assert side_effects == [{"amount": 10_000_000_000_000_000}]


def test_what_the_model_sends_that_a_database_cannot_store_goes_back_to_it_as_an_error(world, llm, use_llm):
    """NaN, a NUL character, an over-long tool name or call id: the calls fail with a catalogue code
    the model can act on (PostgreSQL refused to store them, which failed the whole run)."""
    from tests.support.llm_server import ToolCall as AskedCall

    use_llm(world.a)
    with tenant_context(world.a.org):
        world.a.agent.tools = ["calculator"]
        world.a.agent.save()
    long_id = "call_" + "x" * 300
    llm.script.tool_calls(
        AskedCall("calculator", '{"expression": NaN}', id="call_nan"),
        AskedCall("calculator", {"expression": "1+1\u0000"}, id="call_nul"),
        AskedCall("t" * 150, {}, id="call_long_name"),
        AskedCall("calculator", {"expression": "2+2"}, id=long_id),
        content="Let me try\u0000 these.",
    ).reply("Done.")
    _, run = post_and_run(world.a, "Compute things.")
    assert run.status == RunStatus.COMPLETED
    with tenant_context(world.a.org):
        calls = {c.call_id: c for c in ToolCall.objects.filter(run=run)}
    assert (calls["call_nan"].status, calls["call_nan"].error_code) == ("failed", "INVALID_TOOL_ARGS")
    assert calls["call_nan"].arguments == {"_raw": '{"expression": NaN}'}
    assert calls["call_nul"].error_code == "INVALID_TOOL_ARGS"
    assert calls["call_nul"].arguments == {"_raw": {"expression": "1+1\ufffd"}}
    long_name = calls["call_long_name"]
    assert long_name.error_code == "TOOL_NOT_FOUND" and long_name.tool_name == "t" * 100
    assert calls[long_id].status == "completed"
    answers = {m["tool_call_id"]: m["content"] for m in tool_messages(llm.chat_requests[-1])}
    assert set(answers) == {"call_nan", "call_nul", "call_long_name", long_id}
    assert json.loads(answers[long_id])["result"] == 4
    reply = [m for m in llm.chat_requests[-1].body["messages"] if m["role"] == "assistant"][-1]
    assert reply["content"] == "Let me try\ufffd these."
