"""Every page passes axe-core's WCAG 2 A and AA rules (labels, names, contrast, landmarks, ...), on a wide
and on a narrow screen. axe-core is vendored in ``tests/web/vendor`` (MPL-2.0) so the check runs offline."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from sessions_app.services.catalog import tag_create
from tests.web.helpers import add_messages, in_tenant, make_session, send_message

AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text()
RULES = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}


def violations(page) -> list[str]:
    page.add_script_tag(content=AXE)
    result = page.evaluate("options => axe.run(document, options)", RULES)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — " + "; ".join(n["target"][0] for n in v["nodes"][:5])
        for v in result["violations"]
    ]


@pytest.mark.parametrize("width", [1280, 375])
def test_the_pages_have_no_wcag_violations(page, tenant, sign_in, llm, page_as, width):
    page.set_viewport_size({"width": width, "height": 900})
    tag = in_tenant(tenant, tag_create, organization=tenant.org, name="urgent", color="#fde68a")
    session = make_session(tenant, name="Checked", agent=tenant.manual_agent, tags=[tag])
    add_messages(tenant, session, ("user", "Hello"), ("assistant", "# Hi\n\n| a | b |\n|---|---|\n| 1 | 2 |"))
    llm.script.tool_call("calculator", {"expression": "1+1"})
    send_message(page_as(tenant.member), tenant, session, "Add 1+1")

    page.goto("/login/")
    assert violations(page) == []
    sign_in(tenant.owner)
    page.goto(tenant.path(f"sessions/{session.pk}/"))
    expect(page.locator(".tool-call .badge")).to_have_text("Waiting for approval")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    page.locator("summary", has_text="Tags").click()  # include an open menu
    assert violations(page) == []
    for path in [
        "sessions/",
        "sessions/?q=hello",
        "sessions/new/",
        "approvals/",
        "bookmarks/",
        "agents/",
        "templates/",
        "statistics/",
        "keys/",
        "console/",
    ]:
        page.goto(tenant.path(path))
        assert violations(page) == [], path
