"""Human approval through real processes: the worker lets go of a run that waits for a person, a decision
sent over a websocket re-enqueues it, and the tool's outcome reaches the model on the next worker."""

from __future__ import annotations

import json

from core.tenancy import tenant_context
from tests.e2e.conftest import assert_in_order


def manual_calculator(tenant) -> None:
    with tenant_context(tenant.org):
        tenant.agent.tools = ["calculator"]
        tenant.agent.approval_mode = "manual"
        tenant.agent.save()


def about(call_id: str, *types: str):
    return lambda f: f.get("type") in types and f.get("data", {}).get("id") == call_id


def test_approval_over_websocket_resumes_the_run(tenant, llm):
    manual_calculator(tenant)
    session = tenant.create_session()
    ws = tenant.websocket(session, after=0)
    reviewer = tenant.approvals()
    assert reviewer.wait_type("approvals.snapshot")["pending"] == []
    llm.script.tool_call("calculator", {"expression": "6*7"}).reply("It is 42.", delay=0.01)

    run_id = tenant.post_message(session, "What is 6*7?").json()["run"]["id"]
    pending = ws.wait_type("tool_call.pending")
    call_id = pending["data"]["id"]
    assert pending["data"]["arguments"] == {"expression": "6*7"}
    ws.wait_type("run.requires_action")
    assert tenant.wait_run(session, run_id, ("requires_action",))["status"] == "requires_action"
    # The organization's reviewers hear of it too, from the worker's process.
    reviewer.wait_for(about(call_id, "tool_call.pending"), "the pending call on the approvals feed")
    assert len(llm.chat_requests) == 1  # no worker is waiting on the person

    ws.send({"type": "tool_call.approve", "tool_call": call_id, "id": "yes"})
    ack = ws.wait_for(lambda f: f.get("ref") == "yes", "the approval's answer")
    assert ack == {"type": "ack", "tool_call": call_id, "status": "approved", "ref": "yes"}
    run = tenant.wait_run(session, run_id)
    assert run["status"] == "completed"
    reviewer.wait_for(about(call_id, "tool_call.approved", "tool_call.decided"), "the decision on the feed")

    second = llm.chat_requests[1].body["messages"]
    assert second[-2]["tool_calls"][0]["function"]["name"] == "calculator"
    assert second[-1]["role"] == "tool" and json.loads(second[-1]["content"])["result"] == 42
    call = tenant.api.get(tenant.path(f"tool-calls/{call_id}/")).json()
    assert call["status"] == "completed"
    messages = tenant.messages(session)
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[-1]["content"] == "It is 42."

    log = tenant.log(session)
    assert_in_order(log)
    assert ws.wait_seq(log[-1]["seq"]) == log
    types = [e["type"] for e in log]
    order = ["tool_call.pending", "run.requires_action", "tool_call.approved", "tool_call.completed"]
    assert [types.index(t) for t in order] == sorted(types.index(t) for t in order)
    assert types.index("tool_call.completed") < types.index("run.completed")


def test_rejection_from_the_approvals_feed_reaches_the_model(tenant, llm):
    manual_calculator(tenant)
    session = tenant.create_session()
    reviewer = tenant.approvals()
    reviewer.wait_type("approvals.snapshot")
    llm.script.tool_call("calculator", {"expression": "2**10"}).reply("Fine, I will not.", delay=0.01)

    run_id = tenant.post_message(session, "What is 2**10?").json()["run"]["id"]
    pending = reviewer.wait_for(lambda f: f.get("type") == "tool_call.pending", "a pending call")
    call_id = pending["data"]["id"]
    reviewer.send({"type": "tool_call.reject", "tool_call": call_id, "reason": "not on a Friday", "id": 1})
    ack = reviewer.wait_for(lambda f: f.get("ref") == 1, "the rejection's answer")
    assert ack["status"] == "rejected"

    assert tenant.wait_run(session, run_id)["status"] == "completed"
    tool_result = llm.chat_requests[1].body["messages"][-1]
    assert tool_result["role"] == "tool"
    assert json.loads(tool_result["content"])["error"]["code"] == "APPROVAL_REJECTED"
    assert "not on a Friday" in tool_result["content"]
    assert tenant.messages(session)[-1]["content"] == "Fine, I will not."
