"""Tool calls in the browser: cards with arguments and status, approve, reject with a reason, the inbox."""

from __future__ import annotations

import json

from playwright.sync_api import expect

from tests.web.helpers import FINISHED_ASSISTANT, make_session, send_message


def _ask(page, tenant, sign_in, text: str):
    session = make_session(tenant, agent=tenant.manual_agent)
    sign_in(tenant.member)
    page.goto(tenant.path(f"sessions/{session.pk}/"))
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Send").click()
    card = page.locator(".tool-call")
    expect(card.locator(".badge")).to_have_text("Waiting for approval")
    expect(card.locator(".tool-name")).to_have_text("calculator")
    expect(card.locator(".tool-args")).to_contain_text('"expression": "6*7"')
    expect(page.locator("#runtime-badge")).to_have_text("Awaiting approval")
    return session, card


def test_approving_a_tool_call_runs_it_and_the_reply_uses_its_result(page, tenant, sign_in, llm):
    llm.script.tool_call("calculator", {"expression": "6*7"}).reply("The answer is **42**.")
    session, card = _ask(page, tenant, sign_in, "What is 6*7?")
    card.get_by_role("button", name="Approve").click()
    expect(card.locator(".badge")).to_have_text("Completed")
    expect(card.locator(".tool-result")).to_contain_text('"result": 42')
    expect(page.locator(FINISHED_ASSISTANT).last).to_have_text("The answer is 42.")
    expect(page.locator("#runtime-badge")).to_have_text("Idle")
    # The model was given the tool's result.
    tool_messages = [m for m in llm.chat_requests[-1].messages if m.get("role") == "tool"]
    assert json.loads(tool_messages[0]["content"])["result"] == 42


def test_rejecting_a_tool_call_with_a_reason(page, tenant, sign_in, llm):
    llm.script.tool_call("calculator", {"expression": "6*7"}).reply("All right, no calculator then.")
    session, card = _ask(page, tenant, sign_in, "What is 6*7?")
    card.get_by_label("Reason (optional)").fill("Do it in your head")
    card.get_by_role("button", name="Reject").click()
    expect(card.locator(".badge")).to_have_text("Rejected")
    expect(card.locator(".tool-reason")).to_have_text("acme-member: Do it in your head")
    expect(card.get_by_role("button", name="Approve")).to_have_count(0)
    expect(page.locator(FINISHED_ASSISTANT).last).to_have_text("All right, no calculator then.")
    tool_messages = [m for m in llm.chat_requests[-1].messages if m.get("role") == "tool"]
    assert "Do it in your head" in tool_messages[0]["content"]


def test_the_approvals_inbox_shows_new_calls_live_and_decides_them(page, tenant, sign_in, llm, page_as):
    llm.script.tool_call("calculator", {"expression": "6*7"}).reply("42 it is.")
    session = make_session(tenant, agent=tenant.manual_agent, name="Inbox case")
    sign_in(tenant.owner)  # an admin decides for any session of the organization
    page.goto(tenant.path("approvals/"))
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    expect(page.get_by_text("Nothing is waiting for approval.")).to_be_visible()

    send_message(page_as(tenant.member), tenant, session, "What is 6*7?")  # the session's owner asks
    card = page.locator("#approvals .tool-call")
    expect(card.locator(".tool-name")).to_have_text("calculator")
    expect(card.get_by_role("link", name="in Inbox case")).to_be_visible()
    expect(page.get_by_text("Nothing is waiting for approval.")).to_be_hidden()
    card.get_by_role("button", name="Approve").click()
    expect(page.locator("#approvals .tool-call")).to_have_count(0)
    expect(page.get_by_text("Nothing is waiting for approval.")).to_be_visible()

    page.goto(tenant.path(f"sessions/{session.pk}/"))
    expect(page.locator(".tool-call .badge")).to_have_text("Completed")
    expect(page.locator(FINISHED_ASSISTANT).last).to_have_text("42 it is.")


def test_viewers_see_pending_calls_without_the_buttons(page, tenant, sign_in, llm, page_as):
    llm.script.tool_call("calculator", {"expression": "1+1"})
    session = make_session(tenant, agent=tenant.manual_agent)
    owner_page = page_as(tenant.member)
    send_message(owner_page, tenant, session, "1+1?")
    expect(owner_page.locator(".tool-call .badge")).to_have_text("Waiting for approval")
    sign_in(tenant.viewer)
    page.goto(tenant.path(f"sessions/{session.pk}/"))
    card = page.locator(".tool-call")
    expect(card.locator(".badge")).to_have_text("Waiting for approval")
    expect(card.get_by_text("Waiting for the session's owner or an admin to decide.")).to_be_visible()
    expect(card.get_by_role("button", name="Approve")).to_have_count(0)
    expect(page.get_by_label("Message")).to_have_count(0)


def test_the_inbox_reconnects_when_its_connection_goes_quiet(page, tenant, sign_in, llm, page_as):
    """A half-open connection (after the laptop slept) brings no frames and never closes: after 40 s of
    silence the inbox connects again, and the new connection's snapshot shows the call that came."""
    llm.script.tool_call("calculator", {"expression": "2+2"})
    session = make_session(tenant, agent=tenant.manual_agent, name="Quiet case")
    connections: list[bool] = []  # per connection: does it still pass frames?

    def relay(ws):
        server = ws.connect_to_server()
        index = len(connections)
        connections.append(True)
        ws.on_message(lambda frame: server.send(frame) if connections[index] else None)
        server.on_message(lambda frame: ws.send(frame) if connections[index] else None)

    page.route_web_socket("**/approvals/", relay)
    page.clock.install()
    sign_in(tenant.owner)
    page.goto(tenant.path("approvals/"))
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    connections[0] = False  # the first connection goes quiet both ways, and stays open
    send_message(page_as(tenant.member), tenant, session, "What is 2+2?")
    page.clock.run_for(30_000)
    expect(page.locator("#approvals .tool-call")).to_have_count(0)  # its frame was lost on the way
    page.clock.run_for(35_000)  # silence past the limit: the inbox gives up on it and connects again
    card = page.locator("#approvals .tool-call")
    expect(card.locator(".tool-name")).to_have_text("calculator")
    expect(card.get_by_role("link", name="in Quiet case")).to_be_visible()
    assert len(connections) == 2
