"""One session exported as Markdown, JSON, JSONL and CSV."""

from __future__ import annotations

import csv
import io
import json

import pytest

from core.tenancy import tenant_context
from sessions_app.models import Tag
from sessions_app.services.lifecycle import session_update
from tests.history_app.builders import add_message, add_run, add_tool_call
from tests.support.assertions import assert_error


@pytest.fixture
def conversation(world):
    a, s = world.a, world.a.session
    with tenant_context(a.org):
        session_update(s, tags=[Tag.objects.create(organization=a.org, name="export-me")])
    run = add_run(a, status="completed", prompt_tokens=12, completion_tokens=5)
    add_message(a, 'Hello, "world"\nsecond line', author=a.member)
    reply = add_message(a, "Let me add that up.", role="assistant", run=run)
    add_tool_call(
        a, message=reply, run=run, arguments={"expression": "1+1"}, status="completed", result={"value": 2}
    )
    add_message(a, "Two.", role="assistant", run=run)
    return s


def export(client, tenant, session, fmt):
    return client.get(tenant.url(f"sessions/{session.pk}/export/"), {"format": fmt})


def test_markdown(world, client_for, conversation):
    r = export(client_for(world.a.viewer), world.a, conversation, "md")
    assert r.status_code == 200, r.content
    assert r["Content-Type"] == "text/markdown; charset=utf-8"
    assert r["Content-Disposition"] == f'attachment; filename="acme-session-{str(conversation.pk)[:8]}.md"'
    text = r.content.decode()
    assert text.startswith("# acme session\n")
    assert "- **Tags:** export-me" in text
    assert "## 1. User (acme-member)" in text and 'Hello, "world"\nsecond line' in text
    assert "## 2. Assistant" in text and "**Tool call** `calculator` — completed" in text
    assert '"expression": "1+1"' in text and "## 3. Assistant" in text


def test_json(world, client_for, conversation):
    r = export(client_for(world.a.viewer), world.a, conversation, "json")
    assert r.status_code == 200 and r["Content-Type"] == "application/json"
    assert r["Content-Disposition"].endswith('.json"')
    doc = json.loads(r.content)
    assert doc["format"] == "switchboard-sessions" and doc["version"] == 1
    assert doc["session"]["id"] == str(conversation.pk) and doc["session"]["tags"] == ["export-me"]
    assert [m["seq"] for m in doc["messages"]] == [1, 2, 3]
    assert doc["runs"][0]["prompt_tokens"] == 12 and doc["tool_calls"][0]["result"] == {"value": 2}
    assert [e["seq"] for e in doc["events"]] == list(range(1, len(doc["events"]) + 1))
    assert doc["events"][0]["event"] == "session.created"


def test_jsonl_is_typed_line_by_line(world, client_for, conversation):
    r = export(client_for(world.a.viewer), world.a, conversation, "jsonl")
    assert r.status_code == 200 and r["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in r.content.decode().splitlines()]
    assert lines[0]["type"] == "header" and lines[0]["version"] == 1 and lines[0]["sessions"] == 1
    assert lines[1]["type"] == "session" and lines[1]["agent"] == "helper"
    types = [line["type"] for line in lines]
    assert types.count("message") == 3 and types.count("run") == 1 and types.count("tool_call") == 1
    assert (
        types.count("event")
        == conversation.__class__.all_tenants_unsafe.get(pk=conversation.pk).last_event_seq
    )
    assert all(line.get("session") == str(conversation.pk) for line in lines[2:])


def test_csv_of_messages(world, client_for, conversation):
    r = export(client_for(world.a.viewer), world.a, conversation, "csv")
    assert r.status_code == 200 and r["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(r.content.decode())))
    assert [row["seq"] for row in rows] == ["1", "2", "3"]
    assert rows[0]["content"] == 'Hello, "world"\nsecond line' and rows[0]["author"] == "acme-member"
    assert rows[1]["role"] == "assistant" and rows[1]["status"] == "complete"


def test_csv_cells_a_spreadsheet_would_run_as_formulas_start_with_a_quote(world, client_for):
    """A model's reply (or a user's text) like ``=HYPERLINK(...)`` must not run when the CSV is opened in a
    spreadsheet; the JSON export keeps the text as it is."""
    s = world.a.session
    texts = ['=HYPERLINK("http://evil.example","x")', "+1+2", "-2+3", "@SUM(A1)", "\tx", "- a list", "ok = 1"]
    for text in texts:
        add_message(world.a, text, role="assistant")
    c = client_for(world.a.viewer)
    rows = list(csv.DictReader(io.StringIO(export(c, world.a, s, "csv").content.decode())))
    assert [row["content"] for row in rows] == ["'" + t for t in texts[:-1]] + ["ok = 1"]
    assert [row["seq"] for row in rows] == [str(i) for i in range(1, len(texts) + 1)]
    document = export(c, world.a, s, "json").json()
    assert [m["content"] for m in document["messages"]] == texts


def test_jsonl_is_the_default_and_unknown_formats_are_refused(world, client_for, conversation):
    c = client_for(world.a.viewer)
    assert c.get(world.a.url(f"sessions/{conversation.pk}/export/"))["Content-Type"] == "application/x-ndjson"
    error = assert_error(export(c, world.a, conversation, "docx"), 400, "VALIDATION_ERROR")
    assert "format" in error["details"]


def test_another_organizations_session_is_not_found(world, client_for, conversation):
    c = client_for(world.b.owner)
    assert_error(export(c, world.b, conversation, "md"), 404, "SESSION_NOT_FOUND")
    assert_error(export(c, world.a, conversation, "md"), 404, "ORGANIZATION_NOT_FOUND")
