"""History in the browser: search and open the hit, bookmarks, export, fork, attachments."""

from __future__ import annotations

import json
import re
from pathlib import Path

from playwright.sync_api import expect

from tests.web.helpers import FINISHED_ASSISTANT, add_messages, in_tenant, make_session


def test_search_finds_a_message_and_opens_it_in_its_session(page, tenant, sign_in):
    other = make_session(tenant, name="Unrelated")
    add_messages(tenant, other, ("user", "Nothing to see here"))
    session = make_session(tenant, name="Travel plans")
    messages = add_messages(
        tenant,
        session,
        ("user", "Where should we go in spring?"),
        ("assistant", "Kyoto has beautiful cherry blossoms in April."),
        ("user", "Thanks!"),
    )
    sign_in(tenant.member)
    page.goto(tenant.path("sessions/"))
    page.get_by_label("Search messages").fill("cherry blossoms")
    page.get_by_label("Search messages").press("Enter")
    hits = page.locator(".hit")
    expect(hits).to_have_count(1)
    expect(hits.locator("mark").first).to_have_text(re.compile("cherry", re.I))
    expect(page).to_have_url(re.compile(r"\?.*q=cherry(\+|%20)blossoms"))
    hits.get_by_role("link").click()
    expect(page).to_have_url(re.compile(rf"/sessions/{session.pk}/#m-{messages[1].pk}$"))
    target = page.locator(f"#m-{messages[1].pk}")
    expect(target).to_contain_text("Kyoto has beautiful cherry blossoms in April.")
    # The browser marks the fragment's element once the document is parsed, which under load can come
    # after the element's text is there: wait for it.
    expect(page.locator(":target")).to_have_id(f"m-{messages[1].pk}")


def test_a_hit_on_an_old_message_or_a_tools_result_opens_the_chat_at_it(page, tenant, sign_in):
    """The chat page shows the latest 200 messages: a hit further back, or on a tool's result (shown on
    its call's card), loads the chat back to it and scrolls it into view."""
    from sessions_app.services.messages import message_append
    from tools_app.models import ToolCall

    session = make_session(tenant, name="Long history")
    first, asking = add_messages(
        tenant, session, ("user", "Remember the saffron risotto"), ("assistant", "Checking the pantry")
    )

    def tool_result():
        call = ToolCall.objects.create(
            organization=tenant.org, session=session, message=asking, tool_name="pantry", status="completed"
        )
        return call, message_append(session, role="tool", content="turmeric and saffron", tool_call=call)

    call, result = in_tenant(tenant, tool_result)
    add_messages(tenant, session, *[("user" if i % 2 else "assistant", f"later {i}") for i in range(240)])
    sign_in(tenant.member)
    page.goto(tenant.path("sessions/"))
    page.get_by_label("Search messages").fill("risotto")
    page.get_by_label("Search messages").press("Enter")
    page.locator(".hit").get_by_role("link").click()
    target = page.locator(f"#m-{first.pk}")
    expect(target).to_have_class(re.compile(r"\bjumped\b"))
    expect(target).to_be_in_viewport()
    expect(target).to_contain_text("Remember the saffron risotto")
    expect(page.locator(".msg")).to_have_count(242)

    card = page.locator(f"#tc-{call.pk}")
    page.goto(tenant.path(f"sessions/{session.pk}/#m-{result.pk}"))  # on the same page: the hash changes
    expect(card).to_have_class(re.compile(r"\bjumped\b"))
    expect(target).not_to_have_class(re.compile(r"\bjumped\b"))
    page.goto("about:blank")
    page.goto(tenant.path(f"sessions/{session.pk}/#m-{result.pk}"))  # a fresh page
    expect(card).to_have_class(re.compile(r"\bjumped\b"))
    expect(card).to_be_in_viewport()
    expect(card).to_contain_text("pantry")

    page.goto(tenant.path(f"sessions/{session.pk}/#m-00000000-0000-0000-0000-000000000000"))
    expect(page.locator("#run-errors")).to_contain_text("The linked message is not in this session any more.")


def test_a_search_the_index_cannot_take_says_why(page, tenant, sign_in):
    sign_in(tenant.member)
    page.goto(tenant.path("sessions/?q=a*b"))
    expect(page.locator("#session-results .flash-error")).to_be_visible()


def test_bookmark_a_message_and_find_it_on_the_bookmarks_page(page, tenant, sign_in):
    session = make_session(tenant, name="Recipes")
    messages = add_messages(tenant, session, ("user", "Pancakes?"), ("assistant", "Flour, eggs, milk."))
    sign_in(tenant.member)
    page.goto(tenant.path(f"sessions/{session.pk}/"))
    answer = page.locator(f"#m-{messages[1].pk}")
    answer.get_by_role("button", name="Bookmark").click()
    expect(answer.get_by_role("button", name="Bookmarked")).to_have_attribute("aria-pressed", "true")
    page.get_by_role("link", name="Bookmarks").click()
    entry = page.locator(".bookmark")
    expect(entry).to_contain_text("Recipes · message #2")
    expect(entry).to_contain_text("Flour, eggs, milk.")
    entry.get_by_role("link").click()
    expect(page).to_have_url(re.compile(rf"#m-{messages[1].pk}$"))
    # Bookmarking again takes it back.
    page.locator(f"#m-{messages[1].pk}").get_by_role("button", name="Bookmarked").click()
    expect(page.locator(f"#m-{messages[1].pk}").get_by_role("button", name="Bookmark")).to_have_attribute(
        "aria-pressed", "false"
    )
    page.goto(tenant.path("bookmarks/"))
    expect(page.get_by_text("No bookmarks yet.")).to_be_visible()


def test_export_downloads_the_session_as_json_lines(page, tenant, sign_in, tmp_path):
    session = make_session(tenant, name="Exported chat")
    add_messages(tenant, session, ("user", "Export me"), ("assistant", "Done."))
    sign_in(tenant.member)
    page.goto(tenant.path(f"sessions/{session.pk}/"))
    page.locator(".action-menu summary", has_text="Export").click()
    with page.expect_download() as download_info:
        page.get_by_role("link", name="JSON Lines (lossless, importable)").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".jsonl")
    path = tmp_path / "export.jsonl"
    download.save_as(path)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records[0]["type"] == "header" and records[0]["format"] == "switchboard-sessions"
    contents = [r["content"] for r in records if r["type"] == "message"]
    assert contents == ["Export me", "Done."]


def test_fork_from_a_message_opens_a_new_session_with_the_history_up_to_it(page, tenant, sign_in):
    session = make_session(tenant, name="Original")
    messages = add_messages(
        tenant,
        session,
        ("user", "First question"),
        ("assistant", "First answer"),
        ("user", "Second question"),
    )
    sign_in(tenant.member)
    page.goto(tenant.path(f"sessions/{session.pk}/"))
    page.locator(f"#m-{messages[1].pk}").get_by_role("button", name="Fork from here").click()
    expect(page.get_by_role("heading", name="Original (fork)")).to_be_visible()
    assert str(session.pk) not in page.url
    expect(page.locator(".msg")).to_have_count(2)
    expect(page.locator(".msg").last).to_contain_text("First answer")
    expect(page.get_by_role("link", name="its parent")).to_have_attribute("href", re.compile(str(session.pk)))


def test_attachments_are_uploaded_with_a_message_and_shown_with_their_analysis(
    page, tenant, sign_in, llm, tmp_path
):
    llm.script.reply("I read your notes.")
    notes = tmp_path / "notes.md"
    notes.write_text("# Shopping\n\n- apples\n- pears\n")
    session = make_session(tenant)
    sign_in(tenant.member)
    page.goto(tenant.path(f"sessions/{session.pk}/"))
    page.get_by_label("Message").fill("Please read my notes")
    page.get_by_label("Attach files").set_input_files(str(notes))
    page.get_by_role("button", name="Send").click()
    attachment = page.locator(".msg-user .attachment")
    expect(attachment.locator(".attachment-name")).to_contain_text("notes.md")
    expect(attachment.locator(".attachment-summary")).not_to_be_empty()
    expect(page.locator(FINISHED_ASSISTANT)).to_have_text("I read your notes.")
    # The file downloads from the page, as it was sent.
    with page.expect_download() as download:
        attachment.get_by_role("link", name="notes.md").click()
    assert download.value.suggested_filename == "notes.md"
    assert Path(download.value.path()).read_text() == notes.read_text()
    # The model got the file's text with the message.
    assert "apples" in json.dumps(llm.chat_requests[-1].messages)
