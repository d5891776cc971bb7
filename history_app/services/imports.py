"""Import of the lossless JSONL format (see ``history_app/formats.py``) as new sessions.

Two phases: every line is parsed and checked first (``history_app/import_validation.py``), collecting
errors with their line numbers, and only a file without errors is written, in one transaction, so
nothing is ever half-imported. Ids are regenerated (and references to them inside event data and
checkpoint states rewritten), ``seq`` numbers and timestamps are kept, agents are matched by slug in the
importing organization, the importer owns the new sessions, and other users are matched by username
among the organization's members.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from core.errors import ErrorCode, SwitchboardError
from core.models import Membership, Organization
from history_app.import_validation import SessionBlock, parse_import, parse_when
from history_app.services.checkpoints import attachment_state
from sessions_app.config import validate_session_config
from sessions_app.models import (
    RUN_TERMINAL_STATUSES,
    Attachment,
    Checkpoint,
    Message,
    MessageStatus,
    Run,
    RunStatus,
    RuntimeState,
    Session,
    SessionEvent,
    SessionStatus,
    Tag,
    attachment_upload_to,
)
from sessions_app.selectors import visible_tags
from tools_app.models import ToolCall, ToolCallStatus


class _Remap:
    """Old ids of the file -> new ids; rewrites them wherever they appear inside JSON values."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}

    def new(self, old: str | None) -> uuid.UUID | None:
        if not old:
            return None
        if old not in self.ids:
            self.ids[old] = str(uuid.uuid4())
        return uuid.UUID(self.ids[old])

    def json(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.ids.get(value, value)
        if isinstance(value, list):
            return [self.json(v) for v in value]
        if isinstance(value, dict):
            return {k: self.json(v) for k, v in value.items()}
        return value


def import_sessions(data: bytes, *, organization: Organization, importer) -> list[Session]:
    """Create the sessions of a JSONL export in ``organization``, all or nothing (one transaction).

    Raises ``VALIDATION_ERROR`` (details: ``line`` of the first problem and ``errors`` with each bad
    line) before writing anything. No locks: every row written is new.
    """
    limit = settings.IMPORT_MAX_BYTES
    if len(data) > limit:
        raise SwitchboardError(
            ErrorCode.VALIDATION_ERROR,
            f"The file is larger than the {limit}-byte import limit.",
            {"size": len(data), "limit": limit},
        )
    blocks = parse_import(data, organization)
    remap = _Remap()
    for block in blocks:  # every id is known before any JSON value is rewritten
        remap.new(block.data["id"])
        for rows in block.children.values():
            for row in rows:
                remap.new(row.data.get("id"))
    users = {
        m.user.username: m.user
        for m in Membership.objects.filter(organization=organization).select_related("user")
    }
    with transaction.atomic():
        created = [_write_session(block, organization, importer, remap, users) for block in blocks]
        for block, session in zip(blocks, created, strict=True):
            if block.data.get("parent"):
                Session.objects.filter(pk=session.pk).update(parent_id=remap.new(block.data["parent"]))
    return created


def _when(data: dict[str, Any], key: str) -> datetime | None:
    return parse_when(data.get(key))


def _settled(status: str) -> str:
    # A reply still streaming when it was exported arrives ended, as its run does (and as in a fork).
    return MessageStatus.CANCELLED if status == MessageStatus.STREAMING else status


def _keep_timestamps(model, objects: list, values: list[datetime | None], field_name: str) -> None:
    # auto_now_add overwrites these on insert; put the exported times back in one statement.
    changed = []
    for obj, value in zip(objects, values, strict=True):
        if value is not None:
            setattr(obj, field_name, value)
            changed.append(obj)
    if changed:
        model.objects.bulk_update(changed, [field_name])


def _tags_for(names: list[Any], organization: Organization) -> list[Tag]:
    names = [n for n in dict.fromkeys(names) if isinstance(n, str) and n.strip()]
    found: dict[str, Tag] = {}
    for tag in visible_tags().filter(name__in=names):
        if tag.name not in found or tag.organization_id is not None:
            found[tag.name] = tag
    for name in names:
        if name not in found:
            found[name] = Tag.objects.create(organization=organization, name=name[:50])
    return [found[n] for n in names]


def _write_session(
    block: SessionBlock, organization: Organization, importer, remap: _Remap, users
) -> Session:
    d = block.data
    rows = block.children
    org_id = organization.pk
    events = rows["event"]
    messages = rows["message"]
    session = Session.objects.create(
        id=remap.new(d["id"]),
        organization=organization,
        agent=block.agent,
        owner=importer if getattr(importer, "pk", None) else None,
        name=(d.get("name") or "")[:200],
        status=d.get("status") or SessionStatus.ENDED,
        ended_reason=d.get("ended_reason") or "",
        runtime_state=RuntimeState.IDLE,
        config=validate_session_config(d.get("config") or {}),
        metadata=remap.json(d.get("metadata") or {}),
        forked_at_seq=d.get("forked_at_seq"),
        last_event_seq=max([r.data["seq"] for r in events] + [d.get("last_event_seq") or 0]),
        last_message_seq=max([r.data["seq"] for r in messages], default=0),
        # Never null (sessions are ordered by it): an export without it was last active when created.
        last_activity_at=_when(d, "last_activity_at") or _when(d, "created_at") or timezone.now(),
        expires_at=_when(d, "expires_at"),
        ended_at=_when(d, "ended_at"),
    )
    _keep_timestamps(Session, [session], [_when(d, "created_at")], "created_at")
    session.tags.set(_tags_for(d.get("tags") or [], organization))

    def user(name):
        return users.get(name) if name else None

    run_objs = Run.objects.bulk_create(
        [
            Run(
                id=remap.new(r.data["id"]),
                organization_id=org_id,
                session=session,
                # An imported run is history, never work: one still active would be picked up by
                # lease recovery, so it arrives cancelled.
                status=r.data["status"] if r.data["status"] in RUN_TERMINAL_STATUSES else RunStatus.CANCELLED,
                model=r.data.get("model") or "",
                provider=r.data.get("provider") or "",
                attempts=r.data.get("attempts") or 0,
                ttft_ms=r.data.get("ttft_ms"),
                total_ms=r.data.get("total_ms"),
                prompt_tokens=r.data.get("prompt_tokens") or 0,
                completion_tokens=r.data.get("completion_tokens") or 0,
                error_code=r.data.get("error_code") or "",
                error_message=r.data.get("error_message") or "",
                options=remap.json(r.data.get("options") or {}),
                started_at=_when(r.data, "started_at"),
                finished_at=_when(r.data, "finished_at"),
            )
            for r in rows["run"]
        ]
    )
    _keep_timestamps(Run, run_objs, [_when(r.data, "queued_at") for r in rows["run"]], "queued_at")
    message_objs = Message.objects.bulk_create(
        [
            Message(
                id=remap.new(r.data["id"]),
                organization_id=org_id,
                session=session,
                seq=r.data["seq"],
                role=r.data["role"],
                content=r.data["content"],
                status=_settled(r.data.get("status") or MessageStatus.COMPLETE),
                author=user(r.data.get("author")),
                run_id=remap.new(r.data.get("run")),
                prompt_tokens=r.data.get("prompt_tokens") or 0,
                completion_tokens=r.data.get("completion_tokens") or 0,
                metadata=remap.json(r.data.get("metadata") or {}),
            )
            for r in messages
        ]
    )
    _keep_timestamps(Message, message_objs, [_when(r.data, "created_at") for r in messages], "created_at")
    call_objs = ToolCall.objects.bulk_create(
        [_tool_call(r.data, session, remap, user) for r in rows["tool_call"]]
    )
    _keep_timestamps(
        ToolCall, call_objs, [_when(r.data, "created_at") for r in rows["tool_call"]], "created_at"
    )
    answers = [m for m, r in zip(message_objs, messages, strict=True) if r.data.get("tool_call")]
    for m, r in zip(message_objs, messages, strict=True):
        if r.data.get("tool_call"):
            m.tool_call_id = remap.new(r.data["tool_call"])
    if answers:
        Message.objects.bulk_update(answers, ["tool_call"])
    triggered = []
    for run, r in zip(run_objs, rows["run"], strict=True):
        if r.data.get("trigger_message"):
            run.trigger_message_id = remap.new(r.data["trigger_message"])
            triggered.append(run)
    if triggered:
        Run.objects.bulk_update(triggered, ["trigger_message"])
    attachments = _write_attachments(block, org_id, remap)
    event_objs = SessionEvent.objects.bulk_create(
        [
            SessionEvent(
                organization_id=org_id,
                session=session,
                seq=r.data["seq"],
                type=r.data["event"],
                run_id=remap.new(r.data.get("run")),
                data=remap.json(r.data.get("data") or {}),
            )
            for r in events
        ]
    )
    _keep_timestamps(SessionEvent, event_objs, [_when(r.data, "created_at") for r in events], "created_at")
    checkpoint_objs = Checkpoint.objects.bulk_create(
        [
            Checkpoint(
                id=remap.new(r.data.get("id")) or uuid.uuid4(),
                organization_id=org_id,
                session=session,
                seq=r.data["seq"],
                message_seq=r.data.get("message_seq") or 0,
                reason=r.data.get("reason") or Checkpoint.Reason.MANUAL,
                name=(r.data.get("name") or "")[:200],
                state=_local_state(remap.json(r.data["state"]), message_objs, attachments),
                created_by=user(r.data.get("created_by")),
            )
            for r in rows["checkpoint"]
        ]
    )
    _keep_timestamps(
        Checkpoint, checkpoint_objs, [_when(r.data, "created_at") for r in rows["checkpoint"]], "created_at"
    )
    return session


def _tool_call(data: dict[str, Any], session: Session, remap: _Remap, user) -> ToolCall:
    status, reason = data["status"], data.get("reason") or ""
    if status in (ToolCallStatus.PENDING, ToolCallStatus.APPROVED):
        # Nothing waits on an imported call: an undecided one must not appear in anyone's approval queue.
        status, reason = ToolCallStatus.REJECTED, reason or "Undecided when exported."
    return ToolCall(
        id=remap.new(data["id"]),
        organization_id=session.organization_id,
        session=session,
        message_id=remap.new(data.get("message")),
        run_id=remap.new(data.get("run")),
        call_id=data.get("call_id") or "",
        tool_name=data["tool_name"][:100],
        arguments=remap.json(data.get("arguments") if data.get("arguments") is not None else {}),
        arguments_hash=data.get("arguments_hash") or "",
        status=status,
        requires_approval=bool(data.get("requires_approval")),
        result=remap.json(data.get("result")),
        error_code=data.get("error_code") or "",
        error_message=data.get("error_message") or "",
        decided_by=user(data.get("decided_by")),
        decided_at=_when(data, "decided_at"),
        reason=reason,
        approved_hash=data.get("approved_hash") or "",
        expires_at=_when(data, "expires_at"),
        started_at=_when(data, "started_at"),
        completed_at=_when(data, "completed_at"),
    )


def _write_attachments(block: SessionBlock, org_id: int, remap: _Remap) -> list[Attachment]:
    objs = []
    for row in block.children["attachment"]:
        if row.line not in block.files:
            continue
        data = block.files[row.line]
        attachment = Attachment(
            id=remap.new(row.data.get("id")) or uuid.uuid4(),
            organization_id=org_id,
            message_id=remap.new(row.data["message"]),
            filename=row.data["filename"][:255],
            content_type=row.data["content_type"][:100],
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            analysis=row.data.get("analysis") or {},
        )
        name = attachment_upload_to(attachment, attachment.filename)
        if attachment.file.storage.exists(name):
            attachment.file.name = name
        else:
            attachment.file.save(name, ContentFile(data), save=False)
        objs.append((attachment, _when(row.data, "created_at")))
    created = Attachment.objects.bulk_create([a for a, _ in objs])
    _keep_timestamps(Attachment, created, [when for _, when in objs], "created_at")
    return created


def _local_state(state: dict[str, Any], messages: list[Message], attachments: list[Attachment]) -> dict:
    """A checkpoint's state as this organization holds it. The file's user ids and file paths are the
    exporting instance's: each message's author and attachments become those of the imported message
    with the same ``seq`` (none if there is no such message)."""
    by_seq = {m.seq: m for m in messages}
    files: dict[Any, list[dict[str, Any]]] = {}
    for a in attachments:
        files.setdefault(a.message_id, []).append(attachment_state(a))
    for item in state.get("messages", []):
        local = by_seq.get(item["seq"])
        item["author"] = local.author_id if local is not None else None
        item["attachments"] = files.get(local.pk, []) if local is not None else []
    return state
