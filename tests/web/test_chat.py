"""The chat page: a new session, a reply streaming in, safe rendering, cancelling."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.web.helpers import FINISHED_ASSISTANT, STREAMING_TEXT, make_session, words

PWN = "<img src=x onerror=window.__pwned=1> <script>window.__pwned=1</script>"


def test_new_session_then_a_reply_streams_in_token_by_token(page, tenant, sign_in, llm):
    reply = "**Bold** start " + words(12) + " end."
    llm.script.reply(reply, delay=0.15)
    sign_in(tenant.member)
    page.goto(tenant.path("sessions/"))
    page.get_by_role("link", name="New session").click()
    page.get_by_label("Agent").select_option(label="Helper")
    page.get_by_label("Name").fill("Streaming demo")
    page.get_by_role("button", name="Start session").click()
    expect(page).to_have_url(re.compile(r"/o/acme/sessions/[0-9a-f-]{36}/$"))
    expect(page.get_by_role("heading", name="Streaming demo")).to_be_visible()
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")

    page.get_by_label("Message").fill("Tell me something")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".msg-user .markdown")).to_have_text("Tell me something")
    # Part of the reply is on screen, as plain text, while the rest is still on its way.
    streaming = page.locator(STREAMING_TEXT)
    expect(streaming).to_contain_text("w3")
    partial = streaming.text_content()
    assert "end." not in partial and reply.startswith(partial)
    expect(page.locator("#runtime-badge")).to_have_text("Streaming")
    expect(page.locator("#cancel-form")).to_be_visible()
    # Finished: the stored message is re-rendered by the server, Markdown and all.
    final = page.locator(FINISHED_ASSISTANT)
    expect(final).to_have_text("Bold start " + words(12) + " end.")
    expect(final.locator("strong")).to_have_text("Bold")
    expect(page.locator("#runtime-badge")).to_have_text("Idle")
    expect(page.locator("#cancel-form")).to_be_hidden()
    assert page.js_errors == []


def test_html_and_script_in_messages_are_shown_as_text(page, tenant, sign_in, llm):
    llm.script.reply(f"Echo: {PWN}", delay=0.02)
    session = make_session(tenant)
    sign_in(tenant.member)
    page.goto(tenant.path(f"sessions/{session.pk}/"))
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    page.get_by_label("Message").fill(f"Look: {PWN}")
    page.get_by_label("Message").press("Enter")  # Enter sends
    expect(page.locator(".msg-user .markdown")).to_have_text(f"Look: {PWN}")
    expect(page.locator(FINISHED_ASSISTANT)).to_have_text(f"Echo: {PWN}")
    assert page.locator("#messages img, #messages script").count() == 0
    # Reloaded, the stored messages go through the same rendering.
    page.reload()
    expect(page.locator(FINISHED_ASSISTANT)).to_have_text(f"Echo: {PWN}")
    assert page.locator("#messages img, #messages script").count() == 0
    assert page.evaluate("typeof window.__pwned") == "undefined"


def test_cancel_stops_the_reply_and_keeps_what_was_written(page, tenant, sign_in, llm):
    llm.script.reply(words(200), delay=0.1)
    session = make_session(tenant)
    sign_in(tenant.member)
    page.goto(tenant.path(f"sessions/{session.pk}/"))
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    page.get_by_label("Message").fill("Write a lot")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(STREAMING_TEXT)).to_contain_text("w3")
    page.get_by_role("button", name="Stop the reply").click()
    cancelled = page.locator(".msg-assistant.msg-cancelled")
    expect(cancelled.locator(".badge")).to_have_text("Cancelled")
    kept = cancelled.locator(".markdown").text_content().strip()
    assert kept.startswith("w1 w2 w3") and not kept.endswith("w200")
    expect(page.locator("#runtime-badge")).to_have_text("Idle")
    expect(page.locator("#cancel-form")).to_be_hidden()


def test_a_message_refused_while_the_agent_is_busy_stays_in_the_composer(page, tenant, sign_in, llm):
    llm.script.reply(words(100), delay=0.1)
    session = make_session(tenant, config={"on_busy": "reject"})
    sign_in(tenant.member)
    page.goto(tenant.path(f"sessions/{session.pk}/"))
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    page.get_by_label("Message").fill("First")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(STREAMING_TEXT)).to_contain_text("w2")
    page.get_by_label("Message").fill("Second, too soon")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#composer-error")).to_contain_text("SESSION_BUSY")
    expect(page.get_by_label("Message")).to_have_value("Second, too soon")
    page.get_by_role("button", name="Stop the reply").click()
    expect(page.locator("#runtime-badge")).to_have_text("Idle")
    page.get_by_role("button", name="Send").click()  # once the agent is free, the same text goes
    expect(page.locator(".msg-user .markdown").last).to_have_text("Second, too soon")
