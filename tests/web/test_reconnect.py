"""A reply survives a reload and a dropped connection: the page resumes after the last event it saw."""

from __future__ import annotations

from playwright.sync_api import expect

from core.events import event_publish
from sessions_app.models import Message
from sessions_app.services.messages import message_append, message_snapshot
from tests.web.helpers import FINISHED_ASSISTANT, STREAMING_TEXT, in_tenant, make_session, words

REPLY = words(60)


def _open_and_send(page, tenant, sign_in, llm):
    llm.script.reply(REPLY, delay=0.1)
    session = make_session(tenant)
    sign_in(tenant.member)
    page.goto(tenant.path(f"sessions/{session.pk}/"))
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    page.get_by_label("Message").fill("A long answer, please")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(STREAMING_TEXT)).to_contain_text("w5")


def _assert_streamed_text_is_a_prefix(page, word: str) -> None:
    """While it still streams, the text shown is exactly the start of the reply: nothing lost or doubled."""
    streaming = page.locator(STREAMING_TEXT)
    expect(streaming).to_contain_text(word)
    shown = streaming.text_content()
    assert REPLY.startswith(shown), shown


def test_reloading_in_the_middle_of_a_reply_shows_the_complete_reply(page, tenant, sign_in, llm):
    _open_and_send(page, tenant, sign_in, llm)
    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    _assert_streamed_text_is_a_prefix(page, "w30")
    expect(page.locator(FINISHED_ASSISTANT)).to_have_text(REPLY)
    assert page.locator(".msg-assistant").count() == 1


def test_a_dropped_connection_shows_reconnecting_then_resumes(page, tenant, sign_in, llm):
    _open_and_send(page, tenant, sign_in, llm)
    page.evaluate("window.SwitchboardChat.drop()")
    connection = page.locator("#connection")
    expect(connection).to_have_attribute("data-state", "reconnecting")
    expect(connection).to_have_text("Reconnecting…")
    expect(connection).to_have_attribute("data-state", "live")
    _assert_streamed_text_is_a_prefix(page, "w30")
    expect(page.locator(FINISHED_ASSISTANT)).to_have_text(REPLY)


def test_the_stream_catches_up_after_the_browser_was_offline(page, tenant, sign_in, llm):
    """Offline for a while (the browser's network cut): the stream catches up when it comes back."""
    _open_and_send(page, tenant, sign_in, llm)
    page.context.set_offline(True)
    page.evaluate("window.SwitchboardChat.drop()")
    expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
    page.context.set_offline(False)
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    expect(page.locator(FINISHED_ASSISTANT)).to_have_text(REPLY)


def test_a_retried_reply_starts_over_on_screen(page, tenant, sign_in):
    """A worker died and another took the run over: ``stream.started`` with a higher ``attempt`` for the
    same message means its text starts again (the events are written here as the executor writes them)."""
    session = make_session(tenant)
    sign_in(tenant.member)
    page.goto(tenant.path(f"sessions/{session.pk}/"))
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")

    message = in_tenant(tenant, message_append, session, role="assistant", status="streaming")

    def stream(attempt: int, text: str) -> None:
        event_publish(session, "stream.started", {"message": str(message.pk), "attempt": attempt})
        event_publish(session, "stream.chunk", {"message": str(message.pk), "delta": text, "index": 1})

    in_tenant(tenant, stream, 1, "Half an answer from the lost wor")
    expect(page.locator(STREAMING_TEXT)).to_have_text("Half an answer from the lost wor")
    in_tenant(tenant, stream, 2, "A fresh answer")
    expect(page.locator(STREAMING_TEXT)).to_have_text("A fresh answer")

    def finish() -> None:
        Message.objects.filter(pk=message.pk).update(content="A fresh answer, complete.", status="complete")
        message.refresh_from_db()
        event_publish(session, "message.updated", message_snapshot(message))

    in_tenant(tenant, finish)
    expect(page.locator(FINISHED_ASSISTANT)).to_have_text("A fresh answer, complete.")


def test_a_fragment_that_failed_to_load_is_asked_for_again(page, tenant, sign_in, llm):
    """The first message fragment the page asks for after a live event fails (a dropped request): the
    page asks again, so the message still appears, although its event is behind the resume point."""
    failed: list[str] = []

    def drop_the_first(route):
        if route.request.method == "GET" and not failed:
            failed.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    page.route("**/messages/*/", drop_the_first)
    llm.script.reply("Short and whole.")
    session = make_session(tenant)
    sign_in(tenant.member)
    page.goto(tenant.path(f"sessions/{session.pk}/"))
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    page.get_by_label("Message").fill("Say something short")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".msg-user .markdown")).to_have_text("Say something short")
    expect(page.locator(FINISHED_ASSISTANT)).to_have_text("Short and whole.")
    assert failed
    assert page.js_errors == []
