"""The audit trail of execution sessions on disk, next to the rows in the database.

``ACTIVITY_DIR/YYYY-MM-DD/session_<id>/`` (the UTC day the session started, so one session's files stay
together) holds ``meta.json`` (the session's fields, rewritten on every state change) and one file per
execution, ``01-exec.json``, ``02-exec.json``, ... (zero-padded to at least two digits), plus the exec
host's own ``host.log``. Files are written atomically (temporary file, then rename). A failing disk is
logged, never raised: the database already holds the change, and failing the request after the code ran
would invite running it twice.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings

from tools_app.models import ExecSession, Execution

logger = logging.getLogger(__name__)


def activity_dir(exec_session: ExecSession) -> Path:
    """The session's audit directory (created on first use)."""
    day = exec_session.started_at.astimezone(UTC).date().isoformat()
    path = Path(settings.ACTIVITY_DIR) / day / f"session_{exec_session.pk}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def execution_file_name(number: int) -> str:
    return f"{number:02d}-exec.json"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def exec_session_record(exec_session: ExecSession) -> dict[str, Any]:
    """The fields of ``meta.json``."""
    creator = exec_session.created_by
    return {
        "id": str(exec_session.pk),
        "organization": {"id": exec_session.organization_id, "slug": exec_session.organization.slug},
        "session": str(exec_session.session_id) if exec_session.session_id else None,
        "mode": exec_session.mode,
        "status": exec_session.status,
        "created_by": {"id": creator.pk, "username": creator.get_username()} if creator else None,
        "host": exec_session.host,
        "pid": exec_session.pid,
        "sandboxed": exec_session.sandboxed,
        "workdir": exec_session.workdir,
        "execution_count": exec_session.execution_count,
        "ttl_seconds": exec_session.ttl_seconds,
        "idle_timeout_seconds": exec_session.idle_timeout_seconds,
        "stop_reason": exec_session.stop_reason or None,
        "started_at": _iso(exec_session.started_at),
        "last_used_at": _iso(exec_session.last_used_at),
        "stopped_at": _iso(exec_session.stopped_at),
    }


def execution_record(execution: Execution) -> dict[str, Any]:
    """The fields of ``NN-exec.json``."""
    return {
        "number": execution.number,
        "exec_session": str(execution.exec_session_id),
        "code": execution.code,
        "output": execution.output,
        "exit_code": execution.exit_code,
        "timed_out": execution.timed_out,
        "truncated": execution.truncated,
        "context_lost": execution.context_lost,
        "tool_call": str(execution.tool_call_id) if execution.tool_call_id else None,
        "started_at": _iso(execution.started_at),
        "duration_ms": execution.duration_ms,
    }


def audit_write_meta(exec_session: ExecSession) -> Path | None:
    """(Re)write the session's ``meta.json``; None if the disk refused (logged)."""
    try:
        return _write_json(activity_dir(exec_session) / "meta.json", exec_session_record(exec_session))
    except OSError:
        logger.exception("cannot write the audit meta.json of execution session %s", exec_session.pk)
        return None


def audit_write_execution(exec_session: ExecSession, execution: Execution) -> Path | None:
    """Write the numbered file of one execution; None if the disk refused (logged)."""
    try:
        path = activity_dir(exec_session) / execution_file_name(execution.number)
        return _write_json(path, execution_record(execution))
    except OSError:
        logger.exception("cannot write audit file %s of exec session %s", execution.number, exec_session.pk)
        return None


def _write_json(path: Path, data: dict[str, Any]) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path
