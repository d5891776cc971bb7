"""Reading and checking an import file (the JSONL of ``history_app/formats.py``) before anything is written.

:func:`parse_import` parses every line, checks each record's fields and the references between them,
and collects the problems with their line numbers; it raises one ``VALIDATION_ERROR`` listing them, or
returns the file grouped by session, ready for :func:`history_app.services.imports.import_sessions`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist
from django.db.models import CharField
from django.utils.dateparse import parse_datetime

from core.errors import ErrorCode, SwitchboardError
from core.json_values import json_unstorable
from core.models import Organization
from history_app.formats import FORMAT_NAME, FORMAT_VERSION, LINE_TYPES
from history_app.services.checkpoints import TOOL_CALL_FIELDS
from sessions_app.config import validate_session_config
from sessions_app.models import (
    Agent,
    Attachment,
    Checkpoint,
    Message,
    MessageRole,
    MessageStatus,
    Run,
    RunStatus,
    Session,
    SessionEvent,
    SessionStatus,
)
from tools_app.models import ToolCall, ToolCallStatus

MAX_REPORTED_ERRORS = 20
# Integers must fit the smallest integer column they go to (PostgreSQL's integer): seq numbers, attempts,
# token counts and timings beyond it are not real exports, and would fail only when written.
MAX_INT = 2**31 - 1

# Field kinds: a Python type (None allowed when optional), "datetime", "id", or a tuple of choices.
STR, INT, BOOL, DICT, LIST, ANY = str, int, bool, dict, list, object
SPEC: dict[str, dict[str, tuple[Any, bool]]] = {
    "header": {"format": (STR, True), "version": (INT, True), "sessions": (INT, False)},
    "session": {
        "id": ("id", True),
        "name": (STR, False),
        "agent": (STR, True),
        "status": (tuple(SessionStatus.values), False),
        "ended_reason": (STR, False),
        "config": (DICT, False),
        "tags": (LIST, False),
        "metadata": (DICT, False),
        "parent": ("id", False),
        "forked_at_seq": (INT, False),
        "last_event_seq": (INT, False),
        "last_activity_at": ("datetime", False),
        "expires_at": ("datetime", False),
        "ended_at": ("datetime", False),
        "created_at": ("datetime", False),
    },
    "run": {
        "id": ("id", True),
        "trigger_message": ("id", False),
        "status": (tuple(RunStatus.values), True),
        "model": (STR, False),
        "provider": (STR, False),
        "attempts": (INT, False),
        "ttft_ms": (INT, False),
        "total_ms": (INT, False),
        "prompt_tokens": (INT, False),
        "completion_tokens": (INT, False),
        "error_code": (STR, False),
        "error_message": (STR, False),
        "options": (DICT, False),
        "queued_at": ("datetime", False),
        "started_at": ("datetime", False),
        "finished_at": ("datetime", False),
    },
    "message": {
        "id": ("id", True),
        "seq": (INT, True),
        "role": (tuple(MessageRole.values), True),
        "content": (STR, True),
        "status": (tuple(MessageStatus.values), False),
        "author": (STR, False),
        "run": ("id", False),
        "tool_call": ("id", False),
        "prompt_tokens": (INT, False),
        "completion_tokens": (INT, False),
        "metadata": (DICT, False),
        "created_at": ("datetime", False),
    },
    "attachment": {
        "id": ("id", False),
        "message": ("id", True),
        "filename": (STR, True),
        "content_type": (STR, True),
        "size": (INT, False),
        "sha256": (STR, False),
        "analysis": (DICT, False),
        "data": (STR, False),
        "created_at": ("datetime", False),
    },
    "tool_call": {
        "id": ("id", True),
        "message": ("id", False),
        "run": ("id", False),
        "call_id": (STR, False),
        "tool_name": (STR, True),
        "arguments": (ANY, False),
        "arguments_hash": (STR, False),
        "status": (tuple(ToolCallStatus.values), True),
        "requires_approval": (BOOL, False),
        "result": (ANY, False),
        "error_code": (STR, False),
        "error_message": (STR, False),
        "decided_by": (STR, False),
        "decided_at": ("datetime", False),
        "reason": (STR, False),
        "approved_hash": (STR, False),
        "expires_at": ("datetime", False),
        "started_at": ("datetime", False),
        "completed_at": ("datetime", False),
        "created_at": ("datetime", False),
    },
    "event": {
        "seq": (INT, True),
        "event": (STR, True),
        "run": ("id", False),
        "data": (DICT, False),
        "created_at": ("datetime", False),
    },
    "checkpoint": {
        "id": ("id", False),
        "seq": (INT, True),
        "message_seq": (INT, False),
        "reason": (tuple(Checkpoint.Reason.values), False),
        "name": (STR, False),
        "state": (DICT, True),
        "created_by": (STR, False),
        "created_at": ("datetime", False),
    },
}

# Inside a checkpoint's ``state`` (what history_app/services/checkpoints.py captures and a fork restores):
# its messages and the tool calls they made or answer, with the fields of their own lines where they match.
_AS_IN_A_MESSAGE_LINE = ("seq", "role", "content", "prompt_tokens", "completion_tokens", "metadata")
SPEC["checkpoint message"] = {
    **{f: SPEC["message"][f] for f in _AS_IN_A_MESSAGE_LINE},
    "status": (tuple(MessageStatus.values), True),
    "author": (INT, False),  # a user id here, not a name
    "tool_call": (STR, False),  # the answered call's ``ref``
    "attachments": (LIST, False),
}
SPEC["checkpoint tool call"] = {
    "ref": (STR, True),
    "message_seq": (INT, False),
    **{f: SPEC["tool_call"][f] for f in TOOL_CALL_FIELDS},
}


@dataclass
class Row:
    line: int
    data: dict[str, Any]


@dataclass
class SessionBlock:
    line: int
    data: dict[str, Any]
    children: dict[str, list[Row]] = field(default_factory=lambda: {t: [] for t in LINE_TYPES[2:]})
    agent: Agent | None = None
    files: dict[int, bytes] = field(default_factory=dict)  # attachment line -> bytes


class ImportErrors:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, line: int, message: str) -> None:
        if len(self.items) < MAX_REPORTED_ERRORS:
            self.items.append({"line": line, "message": message})

    def raise_if_any(self) -> None:
        if self.items:
            first = self.items[0]
            raise SwitchboardError(
                ErrorCode.VALIDATION_ERROR,
                f"Line {first['line']}: {first['message']}",
                {"line": first["line"], "errors": self.items},
            )


def _check_fields(kind: str, data: dict[str, Any], line: int, errors: ImportErrors) -> None:
    for name, (expected, required) in SPEC[kind].items():
        value = data.get(name)
        if value is None:
            if required:
                errors.add(line, f"{kind} line: {name!r} is required.")
            continue
        if expected == "id":
            ok = isinstance(value, str) and _is_uuid(value)
        elif expected == "datetime":
            ok = isinstance(value, str) and parse_when(value) is not None
        elif isinstance(expected, tuple):
            ok = value in expected
        elif expected is INT:
            ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INT
        elif expected is ANY:
            ok = True
        else:
            ok = isinstance(value, expected)
        if not ok:
            errors.add(line, f"{kind} line: {name!r} has an invalid value {_short(value)}.")
        elif expected is STR and len(value) > _max_length(kind, name):
            errors.add(line, f"{kind} line: {name!r} is longer than {_max_length(kind, name)} characters.")
        elif unstorable := json_unstorable(value):
            errors.add(line, f"{kind} line: {name!r} contains {unstorable}, which cannot be stored.")


# The model each line kind is written to, and the column a field goes to where the names differ; the
# columns' lengths bound the strings (names longer than their column are cut on import instead).
_MODELS = {
    "checkpoint message": Message,
    "checkpoint tool call": ToolCall,
    "session": Session,
    "run": Run,
    "message": Message,
    "attachment": Attachment,
    "tool_call": ToolCall,
    "event": SessionEvent,
    "checkpoint": Checkpoint,
}
_COLUMNS = {("event", "event"): "type"}
_CUT_ON_IMPORT = {
    ("session", "name"),
    ("checkpoint", "name"),
    ("attachment", "filename"),
    ("attachment", "content_type"),
}


def _max_length(kind: str, name: str) -> float:
    model = _MODELS.get(kind)
    if model is None or (kind, name) in _CUT_ON_IMPORT:
        return math.inf
    try:
        column = model._meta.get_field(_COLUMNS.get((kind, name), name))
    except FieldDoesNotExist:
        return math.inf
    return column.max_length if isinstance(column, CharField) and column.max_length else math.inf


def _check_state(state: dict[str, Any], line: int, errors: ImportErrors) -> None:
    """A checkpoint's state has the shape a fork restores: lists of messages and tool calls (or none,
    when it refers to the session's own messages), each with the fields a fork reads."""
    for key, kind in (("messages", "checkpoint message"), ("tool_calls", "checkpoint tool call")):
        items = state.get(key, [])
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            errors.add(line, f"checkpoint line: state {key!r} must be a list of objects.")
            continue
        for item in items:
            _check_fields(kind, item, line, errors)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def parse_when(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parse_datetime(value)
    except ValueError:
        return None


def _lines(data: bytes) -> Iterable[tuple[int, bytes]]:
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if raw.strip():
            yield number, raw


def parse_import(data: bytes, organization: Organization) -> list[SessionBlock]:
    """Parse and check the whole file; ``VALIDATION_ERROR`` listing bad lines by number otherwise."""
    errors = ImportErrors()
    blocks: list[SessionBlock] = []
    header_seen = False
    declared_sessions = None
    for number, raw in _lines(data):
        try:
            record = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            errors.add(number, "the line is not UTF-8 text.")
            continue
        except json.JSONDecodeError as exc:
            errors.add(number, f"the line is not valid JSON ({exc.msg} at column {exc.colno}).")
            continue
        if not isinstance(record, dict) or record.get("type") not in LINE_TYPES:
            errors.add(number, f"each line must be an object whose type is one of {', '.join(LINE_TYPES)}.")
            continue
        kind = record["type"]
        if not header_seen:
            if kind != "header":
                errors.add(number, "the first line must be the header.")
                errors.raise_if_any()
            _check_fields("header", record, number, errors)
            if record.get("format") != FORMAT_NAME:
                errors.add(number, f"format must be {FORMAT_NAME!r}.")
            elif record.get("version") != FORMAT_VERSION:
                errors.add(
                    number,
                    f"format version {record.get('version')!r} is not supported (expected {FORMAT_VERSION}).",
                )
            errors.raise_if_any()  # nothing else can be read reliably after a bad header
            header_seen = True
            declared_sessions = record.get("sessions")
            continue
        if kind == "header":
            errors.add(number, "only the first line may be a header.")
            continue
        _check_fields(kind, record, number, errors)
        if kind == "checkpoint" and isinstance(record.get("state"), dict):
            _check_state(record["state"], number, errors)
        if kind == "session":
            blocks.append(SessionBlock(line=number, data=record))
            continue
        if not blocks:
            errors.add(number, f"a {kind} line must follow its session line.")
            continue
        block = blocks[-1]
        if record.get("session") not in (None, block.data.get("id")):
            errors.add(number, "the line names a different session than the session line before it.")
            continue
        block.children[kind].append(Row(number, record))
    if not header_seen:
        errors.add(1, "the file is empty: it needs a header line.")
    errors.raise_if_any()
    if declared_sessions is not None and declared_sessions != len(blocks):
        errors.add(1, f"the header announces {declared_sessions} sessions but the file holds {len(blocks)}.")
    _check_references(blocks, organization, errors)
    errors.raise_if_any()
    return blocks


def _check_references(blocks: list[SessionBlock], organization: Organization, errors: ImportErrors) -> None:
    agents = {a.slug: a for a in Agent.objects.filter(organization=organization)}
    session_ids = [b.data["id"] for b in blocks]
    seen_sessions: set[str] = set()
    for block in blocks:
        if block.data["id"] in seen_sessions:
            errors.add(block.line, "this session id appears twice in the file.")
        seen_sessions.add(block.data["id"])
        slug = block.data.get("agent")
        block.agent = agents.get(slug)
        if block.agent is None:
            errors.add(block.line, f"no agent with slug {slug!r} in this organization.")
        try:
            validate_session_config(block.data.get("config") or {})
        except SwitchboardError as exc:
            errors.add(block.line, f"config is not valid: {json.dumps(exc.details, ensure_ascii=False)}")
        parent = block.data.get("parent")
        if parent and parent not in session_ids:
            block.data["parent"] = None  # a parent outside the file does not exist here
        ids = {kind: [r.data.get("id") for r in rows] for kind, rows in block.children.items()}
        for kind in ("run", "message", "tool_call", "attachment", "checkpoint"):
            present = [i for i in ids[kind] if i]
            if len(set(present)) != len(present):
                errors.add(block.line, f"a {kind} id appears twice in this session.")
        for kind, key in (("message", "seq"), ("event", "seq")):
            values = [r.data.get(key) for r in block.children[kind]]
            if len(set(values)) != len(values):
                errors.add(block.line, f"two {kind}s of this session share a seq.")
        event_seqs = sorted(
            r.data.get("seq") for r in block.children["event"] if isinstance(r.data.get("seq"), int)
        )
        if event_seqs and event_seqs != list(range(1, len(event_seqs) + 1)):
            errors.add(
                block.line,
                "the session's events are not numbered 1, 2, 3... without gaps (is the file cut short?).",
            )
        known = {kind: set(ids[kind]) for kind in ids}
        refs = [
            ("run", "trigger_message", "message"),
            ("message", "run", "run"),
            ("message", "tool_call", "tool_call"),
            ("tool_call", "message", "message"),
            ("tool_call", "run", "run"),
            ("event", "run", "run"),
            ("attachment", "message", "message"),
        ]
        for kind, key, target in refs:
            for row in block.children[kind]:
                value = row.data.get(key)
                if value and value not in known[target]:
                    errors.add(row.line, f"{key} {value!r} is not a {target} of this session in the file.")
        for row in block.children["attachment"]:
            _check_attachment(block, row, errors)


def _check_attachment(block: SessionBlock, row: Row, errors: ImportErrors) -> None:
    if row.data.get("data") is None:
        return  # the exporter had lost the file: nothing to store
    try:
        data = base64.b64decode(row.data.get("data") or "", validate=True)
    except (binascii.Error, ValueError):
        errors.add(row.line, "attachment data is not valid base64.")
        return
    limit = settings.ATTACHMENT_MAX_BYTES
    if len(data) > limit:
        errors.add(row.line, f"the attachment is larger than the {limit}-byte limit.")
        return
    digest = row.data.get("sha256")
    if digest and hashlib.sha256(data).hexdigest() != digest:
        errors.add(row.line, "the attachment's sha256 does not match its data.")
        return
    block.files[row.line] = data
