"""The other pages: API keys, statistics, the execution console, read-only access, narrow screens."""

from __future__ import annotations

import urllib.error
import urllib.request

from playwright.sync_api import expect

from tests.web.helpers import add_messages, make_session


def _api_me(live_stack, secret: str) -> int:
    request = urllib.request.Request(
        live_stack.base_url + "/api/v1/me/", headers={"Authorization": f"Bearer {secret}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_api_keys_are_created_with_the_secret_shown_once_and_revoked(page, tenant, sign_in, live_stack):
    sign_in(tenant.owner)
    page.goto(tenant.path("keys/"))
    page.get_by_label("Name").fill("CI pipeline")
    page.get_by_role("checkbox", name="Approve or reject tool calls").check()
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label("Secret key").input_value()
    assert secret.startswith("sb_")
    assert _api_me(live_stack, secret) == 200
    row = page.locator("table.keys tbody tr", has_text="CI pipeline")
    expect(row).to_contain_text("read, write, approve")
    # Shown once: the page never shows it again.
    page.goto(tenant.path("keys/"))
    expect(page.get_by_label("Secret key")).to_have_count(0)
    assert secret not in page.content()
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke CI pipeline").click()
    expect(row).to_contain_text("Revoked")
    assert _api_me(live_stack, secret) == 401


def test_members_cannot_open_the_api_keys_page(page, tenant, sign_in):
    sign_in(tenant.member)
    page.goto(tenant.path("sessions/"))
    expect(page.get_by_role("link", name="API keys")).to_have_count(0)
    response = page.goto(tenant.path("keys/"))
    assert response.status == 403


def test_statistics_page_draws_charts_of_the_organization(page, tenant, sign_in):
    session = make_session(tenant)
    add_messages(tenant, session, ("user", "one"), ("assistant", "two"), ("user", "three"))
    sign_in(tenant.member)
    page.goto(tenant.path("statistics/"))
    expect(page.locator(".total", has_text="messages")).to_contain_text("3")
    messages_chart = page.locator("figure.chart", has_text="Messages per day")
    expect(messages_chart.locator("svg rect")).to_have_count(1)
    expect(messages_chart.locator("svg rect title")).to_contain_text("3 messages")
    expect(page.locator("figure.chart", has_text="Tokens per day")).to_be_visible()
    expect(page.locator("figure.chart", has_text="Errors by code")).to_contain_text("No data in this period.")
    expect(page.locator("figure.chart", has_text="Time to approve")).to_be_visible()
    page.get_by_label("From").fill("2020-01-01")
    page.get_by_label("Until").fill("2020-01-31")
    page.get_by_role("button", name="Show").click()
    expect(page.locator(".total", has_text="messages")).to_contain_text("0")


def test_the_execution_console_runs_code_for_admins(page, tenant, sign_in):
    sign_in(tenant.owner)
    page.goto(tenant.path("sessions/"))
    page.get_by_role("link", name="Console").click()
    page.get_by_label("Interpreter").select_option("python")
    page.get_by_role("button", name="Start").click()
    try:
        expect(page.locator(".page-head .badge")).to_have_text("Running")
        page.get_by_label("Code").fill("x = 6 * 7\nprint(x)")
        page.get_by_role("button", name="Run").click()
        expect(page.locator(".execution .exec-output")).to_have_text("42")
        page.get_by_label("Code").fill("print(x + 1)")  # the interpreter keeps its state
        page.get_by_role("button", name="Run").click()
        expect(page.locator(".execution .exec-output").nth(1)).to_have_text("43")
    finally:
        page.get_by_role("button", name="Stop").click()
    expect(page.locator(".page-head .badge")).to_have_text("Stopped")


def test_viewers_read_sessions_but_cannot_write(page, tenant, sign_in):
    session = make_session(tenant, name="Read only")
    add_messages(tenant, session, ("user", "Hi"), ("assistant", "Hello"))
    sign_in(tenant.viewer)
    page.goto(tenant.path("sessions/"))
    expect(page.get_by_role("link", name="New session")).to_have_count(0)
    expect(page.get_by_role("link", name="Console")).to_have_count(0)
    page.get_by_role("link", name="Read only").click()
    expect(page.locator(".msg")).to_have_count(2)
    expect(page.get_by_text("You can read this session")).to_be_visible()
    expect(page.get_by_role("button", name="Suspend")).to_have_count(0)
    expect(page.locator("summary", has_text="Rename")).to_have_count(0)


def test_the_chat_page_works_on_a_narrow_screen_with_the_keyboard(page, tenant, sign_in, llm):
    llm.script.reply("Small screens are fine.")
    page.set_viewport_size({"width": 375, "height": 740})
    session = make_session(tenant, name="Phone")
    sign_in(tenant.member)
    page.goto(tenant.path(f"sessions/{session.pk}/"))
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    # The composer has the focus on arrival; type and press Enter.
    page.keyboard.type("Hello from a phone")
    page.keyboard.press("Enter")
    expect(page.locator(".msg-assistant .markdown")).to_have_text("Small screens are fine.")
    expect(page.get_by_label("Message")).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    # Keyboard users reach the skip link first, and it takes them to the page's content.
    page.goto(tenant.path("sessions/"))
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
