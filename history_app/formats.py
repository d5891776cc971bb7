"""Session export formats: the lossless JSONL (and the same records as one JSON document), Markdown for
people, and a CSV of the messages.

The JSONL format, version 1 — one JSON object per line, each with a ``type``:

``header``      first line: ``format`` ("switchboard-sessions"), ``version``, ``exported_at``, ``sessions``
``session``     a session's fields; the lines after it up to the next ``session`` line belong to it
``run``         a run (status, model, usage, timings, error)
``message``     a message (``seq``, role, content, status, author, run, tool_call, usage, metadata)
``attachment``  a message's file: metadata, analysis and the bytes (``data``, base64; null if the
                stored file was missing, and then the attachment is not imported)
``tool_call``   a tool call (arguments, status, decision, result)
``event``       an event of the session's log (``seq``, ``event`` = its type, ``data``)
``checkpoint``  a checkpoint (``seq``, ``message_seq``, ``reason``, ``state``); a ``state`` with
                ``by_reference`` true holds config and tags only: its messages, tool calls and
                attachments are the session's own up to ``message_seq``

Rows refer to each other by the ids of the exporting organization; an import regenerates them. Users
are named by username.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from django.utils import timezone

from sessions_app.models import Attachment, Checkpoint, Message, Run, Session, SessionEvent
from tools_app.models import ToolCall

FORMAT_NAME = "switchboard-sessions"
FORMAT_VERSION = 1
LINE_TYPES = ("header", "session", "run", "message", "attachment", "tool_call", "event", "checkpoint")


def iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _id(value) -> str | None:
    return str(value) if value is not None else None


def _username(user) -> str | None:
    return user.username if user is not None else None


def header_record(count: int) -> dict[str, Any]:
    return {
        "type": "header",
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "exported_at": iso(timezone.now()),
        "sessions": count,
    }


def session_record(session: Session) -> dict[str, Any]:
    return {
        "type": "session",
        "id": str(session.pk),
        "name": session.name,
        "agent": session.agent.slug,
        "owner": _username(session.owner),
        "status": session.status,
        "ended_reason": session.ended_reason,
        "runtime_state": session.runtime_state,
        "config": session.config,
        "tags": sorted(t.name for t in session.tags.all()),
        "metadata": session.metadata,
        "parent": _id(session.parent_id),
        "forked_at_seq": session.forked_at_seq,
        "last_event_seq": session.last_event_seq,
        "last_message_seq": session.last_message_seq,
        "last_activity_at": iso(session.last_activity_at),
        "expires_at": iso(session.expires_at),
        "ended_at": iso(session.ended_at),
        "created_at": iso(session.created_at),
    }


def session_records(session: Session, *, with_files: bool = True) -> Iterator[dict[str, Any]]:
    """Every record of one session, ``session`` line first. Reads in the caller's tenant context."""
    sid = str(session.pk)
    yield session_record(session)
    for run in Run.objects.filter(session=session).order_by("queued_at", "id"):
        yield {
            "type": "run",
            "session": sid,
            "id": str(run.pk),
            "trigger_message": _id(run.trigger_message_id),
            "status": run.status,
            "model": run.model,
            "provider": run.provider,
            "attempts": run.attempts,
            "ttft_ms": run.ttft_ms,
            "total_ms": run.total_ms,
            "prompt_tokens": run.prompt_tokens,
            "completion_tokens": run.completion_tokens,
            "error_code": run.error_code,
            "error_message": run.error_message,
            "options": run.options,
            "queued_at": iso(run.queued_at),
            "started_at": iso(run.started_at),
            "finished_at": iso(run.finished_at),
        }
    for m in Message.objects.filter(session=session).select_related("author").order_by("seq"):
        yield message_record(m)
    for a in Attachment.objects.filter(message__session=session).order_by("message__seq", "created_at", "id"):
        record = {
            "type": "attachment",
            "session": sid,
            "id": str(a.pk),
            "message": str(a.message_id),
            "filename": a.filename,
            "content_type": a.content_type,
            "size": a.size,
            "sha256": a.sha256,
            "analysis": a.analysis,
            "created_at": iso(a.created_at),
        }
        if with_files:
            record["data"] = _file_data(a)
        yield record
    for call in (
        ToolCall.objects.filter(session=session).select_related("decided_by").order_by("created_at", "id")
    ):
        yield {
            "type": "tool_call",
            "session": sid,
            "id": str(call.pk),
            "message": _id(call.message_id),
            "run": _id(call.run_id),
            "call_id": call.call_id,
            "tool_name": call.tool_name,
            "arguments": call.arguments,
            "arguments_hash": call.arguments_hash,
            "status": call.status,
            "requires_approval": call.requires_approval,
            "result": call.result,
            "error_code": call.error_code,
            "error_message": call.error_message,
            "decided_by": _username(call.decided_by),
            "decided_at": iso(call.decided_at),
            "reason": call.reason,
            "approved_hash": call.approved_hash,
            "expires_at": iso(call.expires_at),
            "started_at": iso(call.started_at),
            "completed_at": iso(call.completed_at),
            "created_at": iso(call.created_at),
        }
    for event in SessionEvent.objects.filter(session=session).order_by("seq"):
        yield {
            "type": "event",
            "session": sid,
            "seq": event.seq,
            "event": event.type,
            "run": _id(event.run_id),
            "data": event.data,
            "created_at": iso(event.created_at),
        }
    for cp in Checkpoint.objects.filter(session=session).select_related("created_by").order_by("seq", "id"):
        yield {
            "type": "checkpoint",
            "session": sid,
            "id": str(cp.pk),
            "seq": cp.seq,
            "message_seq": cp.message_seq,
            "reason": cp.reason,
            "name": cp.name,
            "state": cp.state,
            "created_by": _username(cp.created_by),
            "created_at": iso(cp.created_at),
        }


def _file_data(attachment: Attachment) -> str | None:
    """The file's bytes as base64; None when the stored file is gone (the export still completes)."""
    try:
        with attachment.file.open("rb") as handle:
            return base64.b64encode(handle.read()).decode("ascii")
    except (FileNotFoundError, ValueError):
        return None


def message_record(m: Message) -> dict[str, Any]:
    return {
        "type": "message",
        "session": str(m.session_id),
        "id": str(m.pk),
        "seq": m.seq,
        "role": m.role,
        "content": m.content,
        "status": m.status,
        "author": _username(m.author),
        "run": _id(m.run_id),
        "tool_call": _id(m.tool_call_id),
        "prompt_tokens": m.prompt_tokens,
        "completion_tokens": m.completion_tokens,
        "metadata": m.metadata,
        "created_at": iso(m.created_at),
    }


def jsonl_line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), sort_keys=False) + "\n"


def sessions_jsonl(sessions: Iterable[Session], count: int) -> Iterator[str]:
    """The lossless JSONL of ``sessions`` (``count`` of them), line by line."""
    yield jsonl_line(header_record(count))
    for session in sessions:
        for record in session_records(session):
            yield jsonl_line(record)


def session_json(session: Session) -> dict[str, Any]:
    """The same records as the JSONL, as one document: the session with its rows in lists."""
    document: dict[str, Any] = {"format": FORMAT_NAME, "version": FORMAT_VERSION}
    records = session_records(session)
    document["session"] = {k: v for k, v in next(records).items() if k != "type"}
    plural = {
        "run": "runs",
        "message": "messages",
        "attachment": "attachments",
        "tool_call": "tool_calls",
        "event": "events",
        "checkpoint": "checkpoints",
    }
    for key in plural.values():
        document[key] = []
    for record in records:
        kind = record.pop("type")
        record.pop("session", None)
        document[plural[kind]].append(record)
    return document


CSV_COLUMNS = [
    "seq",
    "role",
    "status",
    "author",
    "created_at",
    "content",
    "prompt_tokens",
    "completion_tokens",
    "id",
]


# A spreadsheet takes a cell that starts with one of these for a formula. Text from a model or a user
# ("=HYPERLINK(...)", a markdown list's "- ") would run or break there; such a cell starts with a quote.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """``value`` safe to open in a spreadsheet: text that a spreadsheet would read as a formula gets a
    leading ``'`` (shown as text, not run); numbers and other text are unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def session_csv(session: Session) -> str:
    """The session's messages, one row each, in ``seq`` order. For spreadsheets: a cell that would be read
    as a formula starts with ``'`` (:func:`csv_cell`); JSON and JSONL keep every text as it is."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    for m in Message.objects.filter(session=session).select_related("author").order_by("seq"):
        writer.writerow({key: csv_cell(value) for key, value in message_record(m).items()})
    return buffer.getvalue()


def session_markdown(session: Session) -> str:
    """A readable transcript: title, facts, then each message with its tool calls and attachments."""
    lines = [f"# {session.name or 'Session ' + str(session.pk)[:8]}", ""]
    tags = ", ".join(sorted(t.name for t in session.tags.all()))
    facts = [
        ("Session", str(session.pk)),
        ("Agent", f"{session.agent.name} (`{session.agent.slug}`)"),
        ("Owner", _username(session.owner) or "—"),
        ("Status", session.status),
        ("Created", iso(session.created_at)),
        ("Last activity", iso(session.last_activity_at) or "—"),
        ("Tags", tags or "—"),
    ]
    lines += [f"- **{label}:** {value}" for label, value in facts]
    calls_by_message: dict[Any, list[ToolCall]] = {}
    for call in ToolCall.objects.filter(session=session).order_by("created_at", "id"):
        calls_by_message.setdefault(call.message_id, []).append(call)
    files_by_message: dict[Any, list[Attachment]] = {}
    for a in Attachment.objects.filter(message__session=session).order_by("created_at", "id"):
        files_by_message.setdefault(a.message_id, []).append(a)
    for m in Message.objects.filter(session=session).select_related("author").order_by("seq"):
        who = m.role.capitalize() + (f" ({m.author.username})" if m.author else "")
        status = "" if m.status == "complete" else f" — _{m.status}_"
        lines += ["", f"## {m.seq}. {who}{status}", "", f"_{iso(m.created_at)}_", ""]
        if m.content:
            lines.append(m.content)
        for a in files_by_message.get(m.pk, []):
            summary = (a.analysis or {}).get("summary", "")
            lines.append(
                f"- 📎 {a.filename} ({a.content_type}, {a.size} bytes){': ' + summary if summary else ''}"
            )
        for call in calls_by_message.get(m.pk, []):
            lines += [
                "",
                f"**Tool call** `{call.tool_name}` — {call.status}",
                "",
                "```json",
                json.dumps(call.arguments, ensure_ascii=False, indent=2),
                "```",
            ]
            if call.result is not None:
                lines += [
                    "",
                    "Result:",
                    "",
                    "```json",
                    json.dumps(call.result, ensure_ascii=False, indent=2),
                    "```",
                ]
    return "\n".join(lines) + "\n"
