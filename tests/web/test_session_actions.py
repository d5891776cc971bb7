"""Session actions on the chat page: rename, tags, suspend, resume, end; and the sessions list."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from core.tenancy import tenant_context
from sessions_app.models import Session, SessionTemplate
from sessions_app.services.catalog import tag_create
from sessions_app.services.lifecycle import session_activate, session_update
from tests.web.helpers import in_tenant, make_session


def test_rename_tag_suspend_resume_and_end_a_session(page, tenant, sign_in):
    in_tenant(tenant, tag_create, organization=tenant.org, name="urgent", color="#b91c1c")
    session = make_session(tenant, name="Old name")
    sign_in(tenant.member)
    page.goto(tenant.path(f"sessions/{session.pk}/"))
    header = page.locator("#session-header")

    header.locator("summary", has_text="Rename").click()
    page.get_by_label("New name").fill("New name")
    page.get_by_role("button", name="Save name").click()
    expect(page.get_by_role("heading", name="New name")).to_be_visible()

    header.locator("summary", has_text="Tags").click()
    page.get_by_role("checkbox", name="urgent").check()
    page.get_by_role("button", name="Save tags").click()
    chip = page.locator("#session-tags .chip")
    expect(chip).to_have_text("urgent")
    expect(chip).to_have_css("background-color", "rgb(185, 28, 28)")
    expect(chip).to_have_css("color", "rgb(255, 255, 255)")

    in_tenant(tenant, session_activate, session)  # as a first message would; only active ones suspend
    expect(page.locator("#status-badge")).to_have_text("Active")  # live, from the session's stream
    page.get_by_role("button", name="Suspend").click()
    expect(page.locator("#status-badge")).to_have_text("Suspended")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#status-badge")).to_have_text("Active")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="End", exact=True).click()
    expect(page.locator("#status-badge")).to_have_text("Ended")
    expect(page.get_by_text("This session has ended.")).to_be_visible()
    expect(page.get_by_label("Message")).to_have_count(0)
    with tenant_context(tenant.org):
        stored = Session.objects.get(pk=session.pk)
        assert (stored.name, stored.status, [t.name for t in stored.tags.all()]) == (
            "New name",
            "ended",
            ["urgent"],
        )


def test_a_late_reply_to_a_form_never_replaces_a_newer_header(page, tenant, sign_in):
    """The reply to "Save tags" is held back until the session has been activated and the header shows it;
    when that older reply lands, the header keeps the newer state (a stale swap used to hide "Suspend")."""
    in_tenant(tenant, tag_create, organization=tenant.org, name="urgent", color="#b91c1c")
    session = make_session(tenant, name="Racy")
    sign_in(tenant.member)
    page.goto(tenant.path(f"sessions/{session.pk}/"))
    held = []
    page.route("**/tags/", lambda route: held.append(route))
    page.evaluate(
        "window.headerReplies = 0;"
        "document.addEventListener('htmx:afterRequest', function () { window.headerReplies += 1; });"
    )

    page.locator("#session-header summary", has_text="Tags").click()
    page.get_by_role("checkbox", name="urgent").check()
    page.get_by_role("button", name="Save tags").click()
    while not held:  # the route handler runs while Playwright waits
        page.wait_for_timeout(20)
    late_reply = held[0].fetch()  # the server has saved the tags; the browser has not seen the reply yet
    expect(page.locator("#session-tags .chip")).to_have_text("urgent")  # live, from the session's stream

    in_tenant(tenant, session_activate, session)
    expect(page.locator("#status-badge")).to_have_text("Active")
    held[0].fulfill(response=late_reply)
    page.wait_for_function("window.headerReplies >= 1")

    expect(page.locator("#status-badge")).to_have_text("Active")
    expect(page.get_by_role("button", name="Suspend")).to_be_visible()
    expect(page.locator("#session-tags .chip")).to_have_text("urgent")
    expect(page.get_by_role("button", name="Save tags")).to_be_hidden()  # the sent form's menu closed


def test_the_sessions_list_filters_by_status_agent_and_tag_and_pages(page, tenant, sign_in):
    tag = in_tenant(tenant, tag_create, organization=tenant.org, name="billing", color="#fde68a")
    make_session(tenant, name="Tagged one", tags=[tag])
    make_session(tenant, name="Careful one", agent=tenant.manual_agent)
    for i in range(26):
        make_session(tenant, name=f"Filler {i:02d}")
    sign_in(tenant.member)
    page.goto(tenant.path("sessions/"))
    rows = page.locator("table.sessions tbody tr")
    expect(rows).to_have_count(25)
    expect(page.get_by_text("Page 1 of 2")).to_be_visible()
    page.get_by_role("link", name="Next").click()
    expect(page.get_by_text("Page 2 of 2")).to_be_visible()
    expect(rows).to_have_count(3)

    page.get_by_label("Tag").select_option("billing")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Tagged one")
    chip = rows.first.locator(".chip")
    expect(chip).to_have_text("billing")
    expect(chip).to_have_css("color", "rgb(0, 0, 0)")  # dark text on a light chip
    expect(rows.first.locator(".badge").nth(1)).to_have_text("Idle")
    expect(page).to_have_url(re.compile(r"tag=billing"))

    page.get_by_label("Tag").select_option("")
    page.get_by_label("Agent").select_option(label="Careful helper")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Careful one")
    page.get_by_label("Status").select_option("ended")
    expect(page.get_by_text("No sessions match these filters.")).to_be_visible()


def test_a_session_starts_from_a_template(page, tenant, sign_in):
    in_tenant(
        tenant,
        SessionTemplate.objects.create,
        organization=tenant.org,
        name="Support triage",
        agent=tenant.agent,
        config={"temperature": 0.2},
    )
    sign_in(tenant.member)
    page.goto(tenant.path("templates/"))
    page.get_by_role("button", name="Start a session from Support triage").click()
    expect(page.get_by_role("heading", name="Support triage")).to_be_visible()
    expect(page.locator(".session-meta")).to_contain_text("Agent: Helper")


def test_a_session_starts_from_the_agents_page(page, tenant, sign_in):
    sign_in(tenant.member)
    page.goto(tenant.path("agents/"))
    page.get_by_role("button", name="Start a session with Careful helper").click()
    expect(page.locator(".session-meta")).to_contain_text("Agent: Careful helper")


def test_a_header_refresh_keeps_the_keyboard_focus(page, tenant, sign_in):
    session = make_session(tenant, name="Focus")
    in_tenant(tenant, session_activate, session)
    sign_in(tenant.member)
    page.goto(tenant.path(f"sessions/{session.pk}/"))
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    page.get_by_role("button", name="Suspend").focus()

    in_tenant(tenant, session_update, session, name="Renamed elsewhere")  # the header refreshes
    expect(page.get_by_role("heading", name="Renamed elsewhere")).to_be_visible()
    expect(page.get_by_role("button", name="Suspend")).to_be_focused()
