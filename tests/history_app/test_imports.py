"""Import of the lossless JSONL: round trips, line-numbered errors, nothing ever half-imported."""

from __future__ import annotations

import base64
import json
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from core.tenancy import tenant_context
from history_app.services import imports
from history_app.services.attachments import attachments_add
from history_app.services.checkpoints import checkpoint_create, checkpoint_state
from sessions_app.models import Attachment, Checkpoint, Message, Run, Session, SessionEvent, Tag
from sessions_app.services.lifecycle import session_update
from tests.history_app.builders import add_message, add_run, add_tool_call, new_session
from tests.support.assertions import assert_error
from tools_app.models import ToolCall

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def rich(world):
    """A session with every kind of row: runs, messages, a decided tool call, an attachment, a checkpoint."""
    a, s = world.a, world.a.session
    with tenant_context(a.org):
        session_update(
            s, config={"temperature": 0.2}, tags=[Tag.objects.create(organization=a.org, name="keep")]
        )
    run = add_run(a, status="completed", prompt_tokens=40, completion_tokens=9, ttft_ms=120, total_ms=900)
    question = add_message(a, "Add 2 and 3, please.", author=a.member)
    with tenant_context(a.org):
        Run.objects.filter(pk=run.pk).update(trigger_message=question)
        attachments_add(question, [SimpleUploadedFile("n.csv", b"a,b\n2,3\n", content_type="text/csv")])
    ask = add_message(a, "Calculating.", role="assistant", run=run)
    call = add_tool_call(
        a,
        message=ask,
        run=run,
        call_id="call_9",
        arguments={"expression": "2+3"},
        status="completed",
        requires_approval=True,
        result={"value": 5},
        decided_by=a.admin,
    )
    add_message(a, "5", role="tool", tool_call=call, run=run)
    add_message(a, "It is 5.", role="assistant", run=run)
    with tenant_context(a.org):
        checkpoint_create(s, name="done", created_by=a.member)
    return s


def export_jsonl(client, tenant, session) -> bytes:
    response = client.get(tenant.url(f"sessions/{session.pk}/export/"), {"format": "jsonl"})
    assert response.status_code == 200, response.content
    return response.content


def post_file(client, tenant, data: bytes, name: str = "export.jsonl"):
    return client.post(tenant.url("imports/"), {"file": SimpleUploadedFile(name, data)}, format="multipart")


def normalized(data: bytes) -> list[dict]:
    """The records with ids replaced by their order of first appearance and the export time dropped."""
    ids: dict[str, str] = {}

    def walk(value):
        if isinstance(value, str) and UUID_RE.match(value):
            return ids.setdefault(value, f"<id{len(ids)}>")
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items() if k != "exported_at"}
        return value

    return [walk(json.loads(line)) for line in data.decode().splitlines()]


def counts(org) -> dict[str, int]:
    return {
        model.__name__: model.all_tenants_unsafe.filter(organization=org).count()
        for model in (Session, Message, Run, ToolCall, SessionEvent, Checkpoint, Attachment)
    }


def test_round_trip_export_import_export(world, client_for, rich):
    c = client_for(world.a.member)
    first = export_jsonl(c, world.a, rich)
    r = post_file(c, world.a, first)
    assert r.status_code == 201, r.content
    (imported,) = r.json()["sessions"]
    assert r.json()["count"] == 1 and imported["id"] != str(rich.pk) and imported["messages"] == 4
    copy = Session.all_tenants_unsafe.get(pk=imported["id"])
    second = export_jsonl(c, world.a, copy)
    assert normalized(second) == normalized(first)
    # Ids are new everywhere, seqs are kept, the importer owns the copy.
    assert copy.owner == world.a.member and copy.runtime_state == "idle"
    old_ids = set(re.findall(r"[0-9a-f]{8}-[0-9a-f-]{27}", first.decode()))
    # Only the agent is the same row (matched by slug); everything else is new.
    assert old_ids & set(re.findall(r"[0-9a-f]{8}-[0-9a-f-]{27}", second.decode())) == {str(world.a.agent.pk)}
    assert list(Message.all_tenants_unsafe.filter(session=copy).values_list("seq", flat=True)) == [1, 2, 3, 4]
    assert copy.last_event_seq == rich.__class__.all_tenants_unsafe.get(pk=rich.pk).last_event_seq
    # References inside event data point at the new rows.
    created = SessionEvent.all_tenants_unsafe.filter(session=copy, type="message.created").first()
    assert Message.all_tenants_unsafe.filter(pk=created.data["id"], session=copy).exists()
    attachment = Attachment.all_tenants_unsafe.get(message__session=copy)
    with attachment.file.open("rb") as handle:
        assert handle.read() == b"a,b\n2,3\n"
    # The checkpoint (by reference) reads the copy's own history back.
    with tenant_context(world.a.org):
        state = checkpoint_state(Checkpoint.objects.get(session=copy))
    assert [m["content"] for m in state["messages"]] == [
        "Add 2 and 3, please.",
        "Calculating.",
        "5",
        "It is 5.",
    ]
    (call,) = state["tool_calls"]
    assert call["ref"] == str(ToolCall.all_tenants_unsafe.get(session=copy).pk) and call["result"] == {
        "value": 5
    }
    assert state["messages"][0]["attachments"][0]["filename"] == "n.csv" and state["tags"] == ["keep"]


def test_an_import_lands_in_the_importing_organization_only(world, client_for, rich):
    data = export_jsonl(client_for(world.a.member), world.a, rich)
    a_before = counts(world.a.org)
    r = post_file(client_for(world.b.member), world.b, data)  # world.b has an agent "helper" too
    assert r.status_code == 201, r.content
    copy = Session.all_tenants_unsafe.get(pk=r.json()["sessions"][0]["id"])
    assert copy.organization_id == world.b.org.pk and copy.agent == world.b.agent
    assert counts(world.a.org) == a_before
    for model in (Message, Run, ToolCall, SessionEvent, Checkpoint, Attachment):
        assert {row.organization_id for row in model.all_tenants_unsafe.filter(pk__in=_ids(copy, model))} == {
            world.b.org.pk
        }
    # Users of world.a are not members of world.b: their names do not carry over.
    assert Message.all_tenants_unsafe.get(session=copy, seq=1).author is None
    assert ToolCall.all_tenants_unsafe.get(session=copy).decided_by is None
    with tenant_context(world.b.org):
        assert Tag.objects.filter(name="keep", organization=world.b.org).exists()


def test_a_copied_checkpoint_state_refers_to_the_importing_organization_only(world, client_for, rich):
    """A checkpoint taken while a call waited holds a copy of the messages, with user ids and file paths
    of the exporting organization: imported, they become the imported messages' authors and files, and a
    fork from it gets the imported attachment, not the exporter's file."""
    from history_app.services.checkpoints import session_fork

    add_tool_call(world.a, status="pending", requires_approval=True)
    with tenant_context(world.a.org):
        copied = checkpoint_create(rich, name="while waiting")
    assert not copied.state.get("by_reference")
    assert any(m["author"] == world.a.member.pk for m in copied.state["messages"])
    data = export_jsonl(client_for(world.a.member), world.a, rich)
    r = post_file(client_for(world.b.member), world.b, data)
    assert r.status_code == 201, r.content
    copy = Session.all_tenants_unsafe.get(pk=r.json()["sessions"][0]["id"])
    imported_file = Attachment.all_tenants_unsafe.get(message__session=copy).file.name
    with tenant_context(world.b.org):
        checkpoint = Checkpoint.objects.get(session=copy, name="while waiting")
        state = checkpoint_state(checkpoint)
        assert {m["author"] for m in state["messages"]} == {None}  # world.a's users are not world.b's
        files = [a["file"] for m in state["messages"] for a in m["attachments"]]
        assert files == [imported_file]
        fork = session_fork(copy, checkpoint=checkpoint)
        assert list(Attachment.objects.filter(message__session=fork).values_list("file", flat=True)) == [
            imported_file
        ]


def test_a_checkpoint_state_a_fork_could_not_restore_is_refused(world, client_for, good_file):
    lines = good_file.decode().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if '"type":"checkpoint"' in text)
    checkpoint = json.loads(lines[line - 1])
    for state, fragment in (
        ({**checkpoint["state"], "messages": [{"role": "user", "status": "complete"}]}, "'seq' is required"),
        ({**checkpoint["state"], "messages": "everything"}, "must be a list of objects"),
        ({**checkpoint["state"], "tool_calls": [{"ref": "x", "status": "lost"}]}, "'status'"),
    ):
        data = broken(good_file, line, json.dumps({**checkpoint, "state": state}))
        assert_rejected(world, client_for, data, line, fragment)


def _ids(session, model):
    if model is Attachment:
        return Attachment.all_tenants_unsafe.filter(message__session=session).values("pk")
    return model.all_tenants_unsafe.filter(session=session).values("pk")


def test_active_runs_and_undecided_calls_arrive_as_history(world, client_for, rich):
    add_run(world.a, status="running")  # history, not work: arrives cancelled
    add_tool_call(world.a, status="pending", requires_approval=True)
    add_message(world.a, "half a reply", role="assistant", status="streaming")  # and so does its reply
    data = export_jsonl(client_for(world.a.member), world.a, rich)
    r = post_file(client_for(world.a.member), world.a, data)
    copy = Session.all_tenants_unsafe.get(pk=r.json()["sessions"][0]["id"])
    assert sorted(Run.all_tenants_unsafe.filter(session=copy).values_list("status", flat=True)) == [
        "cancelled",
        "completed",
    ]
    assert "pending" not in set(
        ToolCall.all_tenants_unsafe.filter(session=copy).values_list("status", flat=True)
    )
    reply = Message.all_tenants_unsafe.get(session=copy, content="half a reply")
    assert reply.status == "cancelled"


def test_many_sessions_in_one_file_keep_their_parent_link(world, client_for, rich):
    from history_app.services.checkpoints import session_fork

    with tenant_context(world.a.org):
        fork = session_fork(rich, message=Message.objects.get(session=rich, seq=2))
    from history_app.formats import sessions_jsonl

    with tenant_context(world.a.org):
        sessions = list(Session.objects.filter(pk__in=[rich.pk, fork.pk]).order_by("created_at"))
        data = "".join(sessions_jsonl(sessions, 2)).encode()
    r = post_file(client_for(world.a.member), world.a, data)
    assert r.status_code == 201, r.content
    parent_id, child_id = (s["id"] for s in r.json()["sessions"])
    assert str(Session.all_tenants_unsafe.get(pk=child_id).parent_id) == parent_id


def broken(data: bytes, line: int, replacement: str) -> bytes:
    lines = data.decode().splitlines()
    lines[line - 1] = replacement
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def good_file(world, client_for, rich):
    return export_jsonl(client_for(world.a.member), world.a, rich)


def assert_rejected(world, client_for, data: bytes, line: int, fragment: str) -> dict:
    before = counts(world.a.org)
    error = assert_error(post_file(client_for(world.a.member), world.a, data), 400, "VALIDATION_ERROR")
    assert error["details"]["line"] == line, error
    assert any(e["line"] == line and fragment in e["message"] for e in error["details"]["errors"]), error
    assert counts(world.a.org) == before  # nothing half-imported
    return error


def test_bad_json_on_a_line_is_reported_with_its_number(world, client_for, good_file):
    assert_rejected(world, client_for, broken(good_file, 5, '{"type": "message", oops'), 5, "not valid JSON")


def test_unknown_agent_is_named(world, client_for, good_file):
    data = broken(
        good_file, 2, good_file.decode().splitlines()[1].replace('"agent":"helper"', '"agent":"ghost"')
    )
    assert_rejected(world, client_for, data, 2, "'ghost'")


def test_wrong_version_and_format(world, client_for, good_file):
    header = json.loads(good_file.decode().splitlines()[0])
    assert_rejected(
        world, client_for, broken(good_file, 1, json.dumps({**header, "version": 2})), 1, "version 2"
    )
    assert_rejected(
        world, client_for, broken(good_file, 1, json.dumps({**header, "format": "other"})), 1, "format"
    )


def test_other_malformed_lines(world, client_for, good_file):
    lines = good_file.decode().splitlines()
    message_line = next(i for i, line in enumerate(lines, 1) if '"type":"message"' in line)
    message = json.loads(lines[message_line - 1])
    event_line = next(i for i, line in enumerate(lines, 1) if '"type":"event"' in line)
    event = json.loads(lines[event_line - 1])
    run_line = next(i for i, line in enumerate(lines, 1) if '"type":"run"' in line)
    run = json.loads(lines[run_line - 1])
    cases = [
        (broken(good_file, message_line, json.dumps({**message, "role": "robot"})), message_line, "'role'"),
        (broken(good_file, message_line, json.dumps({**message, "seq": -1})), message_line, "'seq'"),
        # Past their columns: an integer beyond PostgreSQL's integer, a string beyond its column's length.
        (broken(good_file, message_line, json.dumps({**message, "seq": 2**31})), message_line, "'seq'"),
        (broken(good_file, message_line, json.dumps({**message, "seq": 2**64})), message_line, "'seq'"),
        (
            broken(good_file, event_line, json.dumps({**event, "event": "x" * 41})),
            event_line,
            "'event' is longer than 40",
        ),
        (
            broken(good_file, run_line, json.dumps({**run, "provider": "p" * 41})),
            run_line,
            "'provider' is longer than 40",
        ),
        # What PostgreSQL cannot store (a NUL character, in text or JSON) or JSON cannot hold (NaN).
        (
            broken(good_file, message_line, json.dumps({**message, "content": "a\u0000b"})),
            message_line,
            "'content' contains a NUL character",
        ),
        (
            broken(good_file, message_line, json.dumps({**message, "metadata": {"k": [float("nan")]}})),
            message_line,
            "'metadata' contains NaN or Infinity",
        ),
        (
            broken(good_file, event_line, json.dumps({**event, "data": {"\u0000": 1}})),
            event_line,
            "'data' contains a NUL character",
        ),
        (
            broken(
                good_file,
                message_line,
                json.dumps({**message, "run": "7" * 8 + "-0000-0000-0000-" + "0" * 12}),
            ),
            message_line,
            "is not a run",
        ),
        (broken(good_file, message_line, "[1, 2]"), message_line, "each line must be an object"),
        (
            broken(good_file, message_line, json.dumps({**message, "type": "sticker"})),
            message_line,
            "type is one of",
        ),
        (
            broken(good_file, 1, json.dumps({**json.loads(lines[0]), "sessions": 2})),
            1,
            "announces 2 sessions",
        ),
    ]
    without_first_event = "\n".join(lines[: event_line - 1] + lines[event_line:]) + "\n"
    cases.append((without_first_event.encode(), 2, "without gaps"))
    for data, line, fragment in cases:
        assert_rejected(world, client_for, data, line, fragment)


def test_header_must_come_first_and_the_file_must_not_be_empty(world, client_for, good_file):
    lines = good_file.decode().splitlines()
    assert_rejected(
        world, client_for, ("\n".join(lines[1:]) + "\n").encode(), 1, "first line must be the header"
    )
    assert_rejected(world, client_for, b"\n\n", 1, "empty")


def test_a_bad_attachment_is_refused(world, client_for, good_file):
    lines = good_file.decode().splitlines()
    index = next(i for i, line in enumerate(lines, 1) if '"type":"attachment"' in line)
    record = json.loads(lines[index - 1])
    tampered = {**record, "data": base64.b64encode(b"different bytes").decode()}
    assert_rejected(world, client_for, broken(good_file, index, json.dumps(tampered)), index, "sha256")
    assert_rejected(
        world, client_for, broken(good_file, index, json.dumps({**record, "data": "%%%"})), index, "base64"
    )


def test_errors_in_a_later_session_reject_the_whole_file(world, client_for, good_file):
    lines = good_file.decode().splitlines()
    header = json.loads(lines[0])
    second = [line.replace('"agent":"helper"', '"agent":"nobody"') for line in lines[1:]]
    data = "\n".join([json.dumps({**header, "sessions": 2}), *lines[1:], *second]) + "\n"
    # The second session reuses the first one's ids too; both problems are reported with line numbers.
    error = assert_rejected(world, client_for, data.encode(), len(lines) + 1, "'nobody'")
    assert len(error["details"]["errors"]) >= 1


def test_a_failure_while_writing_rolls_everything_back(world, rich, monkeypatch):
    data = None
    from history_app.formats import sessions_jsonl

    with tenant_context(world.a.org):
        other = new_session(world.a, "second")
        add_message(world.a, "in the second", session=other)
        sessions = list(Session.objects.order_by("created_at"))
        data = "".join(sessions_jsonl(sessions, len(sessions))).encode()
        before = counts(world.a.org)
        real = imports._write_session
        calls = []

        def flaky(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                raise RuntimeError("database went away")
            return real(*args, **kwargs)

        monkeypatch.setattr(imports, "_write_session", flaky)
        with pytest.raises(RuntimeError):
            imports.import_sessions(data, organization=world.a.org, importer=world.a.member)
    assert counts(world.a.org) == before


def test_request_level_checks(world, client_for, good_file, settings):
    c = client_for(world.a.member)
    assert_error(c.post(world.a.url("imports/"), {}, format="multipart"), 400, "VALIDATION_ERROR")
    assert_error(c.post(world.a.url("imports/"), {"file": "x"}, format="json"), 415, "UNSUPPORTED_MEDIA_TYPE")
    settings.IMPORT_MAX_BYTES = 10
    assert_error(post_file(c, world.a, good_file), 400, "VALIDATION_ERROR")
    assert_error(post_file(client_for(world.a.viewer), world.a, good_file), 403, "PERMISSION_DENIED")


def test_an_attachment_whose_file_is_gone_exports_without_data_and_is_skipped(world, client_for, rich):
    with tenant_context(world.a.org):
        attachment = Attachment.objects.get(message__session=rich)
        attachment.file.storage.delete(attachment.file.name)
    c = client_for(world.a.member)
    data = export_jsonl(c, world.a, rich)
    (line,) = [json.loads(x) for x in data.decode().splitlines() if '"type":"attachment"' in x]
    assert line["data"] is None and line["filename"] == "n.csv"
    r = post_file(c, world.a, data)
    assert r.status_code == 201, r.content
    copy = r.json()["sessions"][0]["id"]
    assert not Attachment.all_tenants_unsafe.filter(message__session_id=copy).exists()
    assert Message.all_tenants_unsafe.filter(session_id=copy).count() == 4
