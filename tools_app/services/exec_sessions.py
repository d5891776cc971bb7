"""Execution sessions: start, execute, stop, the one bound to a chat session, and the reaper.

Each running session is served by its own *exec host* process (:mod:`tools_app.execution.host`), started
detached so that it belongs to no request-serving process: the ASGI server and every queue worker reach
it through its Unix socket (:class:`~tools_app.execution.host_client.ExecHostClient`). The row records the
machine (``host``) and the host process (``pid``).

Sessions are host-local: in a scale-out deployment requests for a session must reach the machine that
runs it; elsewhere the services answer ``INVALID_STATE`` naming that machine. The reaper only looks after
the sessions of the machine it runs on (schedule it on every machine).

No function here holds a database lock while it talks to a host (a SQLite write lock is global); state
changes are single conditional UPDATEs. Call them outside ``transaction.atomic``: a session's row must be
committed as running before its processes exist, or another process's reaper could take them for
leftovers (it spares sandboxes younger than ``START_GRACE_SECONDS``).
"""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from core.errors import ErrorCode, SwitchboardError, not_found
from core.models import Organization
from core.tenancy import tenant_context
from sessions_app.models import SessionStatus
from tools_app.execution import DRIVERS, SandboxError, SandboxUnavailable
from tools_app.execution.host import read_exit_file
from tools_app.execution.host_client import (
    ExecHostClient,
    HostError,
    HostTimeout,
    HostUnreachable,
    host_process_alive,
    spawn_host,
)
from tools_app.models import ExecSession, ExecSessionStatus, Execution, ToolCall
from tools_app.services.exec_audit import activity_dir, audit_write_execution, audit_write_meta
from tools_app.services.exec_processes import (
    START_GRACE_SECONDS,
    chat_start_lock,
    exec_root,
    host_ensure_gone,
    kill_leftover_processes,
    sandbox_config,
    this_host,
)

logger = logging.getLogger(__name__)

RUNNING = ExecSessionStatus.RUNNING
MAX_CODE_CHARS = 1_000_000
# Seconds kept, of a caller's time budget (``within``), for the host to stop an execution and answer.
EXEC_ANSWER_MARGIN_SECONDS = 5.0
MAX_TTL_SECONDS = 7 * 24 * 3600


def exec_sessions_require_enabled() -> None:
    if not settings.ENABLE_EXEC_SESSIONS:
        raise SwitchboardError(
            ErrorCode.EXEC_SESSIONS_DISABLED,
            "Execution sessions are disabled on this server (an operator can enable them with "
            "ENABLE_EXEC_SESSIONS=true).",
        )


def _validation(message: str, field: str) -> SwitchboardError:
    return SwitchboardError(ErrorCode.VALIDATION_ERROR, message, {field: [message]})


def _seconds(value: Any, default: int, field: str) -> int:
    if value is None:
        return int(default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TTL_SECONDS:
        raise _validation(f"{field} must be a whole number of seconds from 1 to {MAX_TTL_SECONDS}.", field)
    return value


def _exec_timeout(value: Any) -> float:
    if value is None:
        return float(settings.EXEC_DEFAULT_TIMEOUT_SECONDS)
    limit = float(settings.EXEC_MAX_TIMEOUT_SECONDS)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= limit:
        raise _validation(f"timeout must be a number of seconds above 0 and at most {limit:g}.", "timeout")
    return float(value)


def _fresh(exec_session: ExecSession) -> ExecSession:
    return ExecSession.objects.select_related("organization", "created_by").get(pk=exec_session.pk)


def _require_local(exec_session: ExecSession) -> None:
    if exec_session.host != this_host():
        raise SwitchboardError(
            ErrorCode.INVALID_STATE,
            f"This execution session runs on {exec_session.host!r}; requests for it must reach that machine.",
            {"host": exec_session.host, "this_host": this_host()},
        )


def _require_running(exec_session: ExecSession) -> None:
    if exec_session.status != RUNNING:
        reason = f" ({exec_session.stop_reason})" if exec_session.stop_reason else ""
        raise SwitchboardError(
            ErrorCode.INVALID_STATE,
            f"The execution session is {exec_session.status}{reason}; start a new one.",
            {"status": exec_session.status, "stop_reason": exec_session.stop_reason},
        )


# --- state changes ---------------------------------------------------------------------------------------
def exec_session_start(
    *,
    organization: Organization,
    mode: str,
    created_by=None,
    session=None,
    ttl_seconds: int | None = None,
    idle_timeout_seconds: int | None = None,
) -> ExecSession:
    """Start a session: a ``running`` row (committed first), its directories, then its exec host.

    Raises ``EXEC_SESSIONS_DISABLED``, ``VALIDATION_ERROR`` (mode, ttl, idle) or ``SANDBOX_UNAVAILABLE``
    (the row is then kept as ``failed`` with the reason). No lock: the row is new.
    """
    exec_sessions_require_enabled()
    if mode not in DRIVERS:
        raise _validation(f"mode must be one of: {', '.join(sorted(DRIVERS))}.", "mode")
    ttl = _seconds(ttl_seconds, settings.EXEC_SESSION_TTL_SECONDS, "ttl_seconds")
    idle = _seconds(idle_timeout_seconds, settings.EXEC_SESSION_IDLE_SECONDS, "idle_timeout_seconds")
    with tenant_context(organization):
        if session is not None and session.organization_id != organization.pk:
            raise not_found(ErrorCode.SESSION_NOT_FOUND, "Session")
        exec_session = ExecSession.objects.create(
            organization=organization,
            session=session,
            mode=mode,
            created_by=created_by,
            host=this_host(),
            ttl_seconds=ttl,
            idle_timeout_seconds=idle,
        )
        try:
            session_dir = exec_root() / str(exec_session.pk)
            session_dir.mkdir(mode=0o711)
            exec_session.workdir = str(session_dir / "workspace")
            exec_session.save(update_fields=["workdir"])
            audit_write_meta(exec_session)
            info = spawn_host(
                session_id=str(exec_session.pk),
                mode=mode,
                workdir=exec_session.workdir,
                deadline=exec_session.started_at.timestamp() + ttl,
                idle_seconds=idle,
                config=sandbox_config(),
                allow_unsafe=settings.EXEC_SESSIONS_ALLOW_UNSAFE,
                output_limit=settings.EXEC_OUTPUT_LIMIT_BYTES,
                log_path=activity_dir(exec_session) / "host.log",
            )
        except (SandboxError, OSError) as exc:  # OSError: EXEC_ROOT or ACTIVITY_DIR not writable
            reason = "sandbox_unavailable" if isinstance(exc, SandboxUnavailable) else "start_failed"
            host_ensure_gone(exec_session)
            _finish(exec_session, ExecSessionStatus.FAILED, reason)
            raise SwitchboardError(
                ErrorCode.SANDBOX_UNAVAILABLE,
                f"The execution session could not start: {exc}",
                {"mode": mode, "reason": reason},
            ) from exc
        started = ExecSession.objects.filter(pk=exec_session.pk, status=RUNNING).update(
            pid=info.pid, sandboxed=info.sandboxed
        )
        exec_session = _fresh(exec_session)
        if not started:  # stopped by someone else while it was starting: take the new host down too
            exec_session.pid = info.pid
            try:
                ExecHostClient(exec_session).stop(exec_session.stop_reason or "user")
            except HostError:
                pass
            host_ensure_gone(exec_session)
            _require_running(exec_session)
        audit_write_meta(exec_session)
    return exec_session


def exec_session_execute(
    exec_session: ExecSession,
    code: str,
    *,
    timeout: float | None = None,
    tool_call: ToolCall | None = None,
    within: float | None = None,
) -> Execution:
    """Run ``code`` in the session's persistent context and record it (row + ``NN-exec.json``).

    A timeout is a result, not an error: the execution is recorded with ``timed_out`` (and
    ``context_lost`` when the interpreter had to be killed; the host then starts a fresh one). Raises
    ``INVALID_STATE`` for a stopped session (or one whose host is gone: it is marked so first),
    ``SESSION_BUSY`` if another execution holds it for longer than ``EXEC_MAX_TIMEOUT_SECONDS``,
    ``TOOL_TIMEOUT`` if the host does not answer, ``VALIDATION_ERROR`` for bad code or timeout.
    Executions of one session are serialized by its host, which also numbers them.

    ``within``: seconds the whole call may take, waiting for the session included (a tool's timeout):
    the wait is cut so that a run that has to wait still ends in time, and code that could not start in
    time is refused (``SESSION_BUSY``) rather than run after its caller stopped waiting for it.
    """
    exec_sessions_require_enabled()
    if not isinstance(code, str) or len(code) > MAX_CODE_CHARS:
        raise _validation(f"code must be text of at most {MAX_CODE_CHARS} characters.", "code")
    if "\0" in code:
        raise _validation("code must not contain NUL characters.", "code")
    seconds = _exec_timeout(timeout)
    with tenant_context(exec_session.organization):
        current = _fresh(exec_session)
        _require_running(current)
        _require_local(current)
        # Marks the session in use for the reaper's idle check while a long execution runs.
        ExecSession.objects.filter(pk=current.pk).update(last_used_at=timezone.now())
        wait = float(settings.EXEC_MAX_TIMEOUT_SECONDS)
        if within is not None:
            wait = max(0.0, min(wait, within - seconds - EXEC_ANSWER_MARGIN_SECONDS))
        try:
            reply = ExecHostClient(current).exec(code, timeout=seconds, wait=wait)
        except HostTimeout as exc:
            raise SwitchboardError(ErrorCode.TOOL_TIMEOUT, f"The execution session did not answer: {exc}")
        except HostError as exc:
            _raise_host_error(current, exc)
        result = reply["result"]
        now = timezone.now()
        with transaction.atomic():
            execution = Execution.objects.create(
                organization=current.organization,
                exec_session=current,
                number=reply["number"],
                code=code,
                output=result["output"].replace("\0", "\ufffd"),  # PostgreSQL text cannot hold NUL
                exit_code=result["exit_code"],
                timed_out=result["timed_out"],
                truncated=result["truncated"],
                context_lost=result["context_lost"],
                tool_call=tool_call,
                started_at=datetime.fromtimestamp(reply["started_at"], tz=UTC),
                duration_ms=result["duration_ms"],
            )
            ExecSession.objects.filter(pk=current.pk).update(
                execution_count=Greatest(F("execution_count"), execution.number), last_used_at=now
            )
        audit_write_execution(current, execution)
        exec_session.execution_count = max(exec_session.execution_count, execution.number)
        exec_session.last_used_at = now
    return execution


def _raise_host_error(exec_session: ExecSession, exc: HostError) -> NoReturn:
    if exc.kind == "busy":
        raise SwitchboardError(
            ErrorCode.SESSION_BUSY, "The execution session is busy with another execution."
        )
    if exc.kind == "invalid":
        raise _validation(str(exc), "code")
    if isinstance(exc, HostUnreachable) or exc.kind == "stopped":
        _require_running(_host_lost(exec_session))
    raise SwitchboardError(ErrorCode.TOOL_EXECUTION_FAILED, f"The execution session failed: {exc}")


def exec_session_stop(exec_session: ExecSession, reason: str = "user") -> ExecSession:
    """Stop the session's host and sandbox, make sure no process is left, mark it ``stopped``.

    Stopping a session that is not running changes nothing. Works even when execution sessions are
    disabled (clean-up must always be possible). Conditional UPDATE, no lock.
    """
    with tenant_context(exec_session.organization):
        current = _fresh(exec_session)
        if current.status != RUNNING:
            return current
        _require_local(current)
        try:
            ExecHostClient(current).stop(reason)
        except HostError:
            pass  # gone or hung: host_ensure_gone kills what is left
        host_ensure_gone(current)
        return _finish(current, ExecSessionStatus.STOPPED, reason)


def exec_session_for_chat(session, mode: str, user=None) -> ExecSession:
    """The running execution session of ``mode`` bound to chat ``session``, started on first use.

    A bound session whose host died is marked and replaced (its state is lost). Starts are serialized
    per chat session on this machine by a file lock, so parallel tool calls share one context.
    """
    exec_sessions_require_enabled()
    with tenant_context(session.organization), chat_start_lock(session.pk):
        existing = (
            ExecSession.objects.select_related("organization")
            .filter(session=session, mode=mode, status=RUNNING)
            .order_by("-started_at")
            .first()
        )
        if existing is not None:
            if existing.host != this_host() or host_process_alive(existing.pid, str(existing.pk)):
                return existing  # on another machine, exec_session_execute says where it runs
            if existing.pid is not None:
                _host_lost(existing)
        return exec_session_start(
            organization=session.organization, mode=mode, created_by=user, session=session
        )


def _host_lost(exec_session: ExecSession) -> ExecSession:
    """The host is gone: clean up and mark the row by what the host said on exit (nothing: a crash)."""
    host_ensure_gone(exec_session)
    exit_info = read_exit_file(exec_session.workdir) if exec_session.workdir else None
    reason = str(exit_info.get("reason") or "") if exit_info else ""
    if reason and reason != "failed":
        return _finish(exec_session, ExecSessionStatus.STOPPED, reason)
    return _finish(exec_session, ExecSessionStatus.FAILED, reason or "host_lost")


def _finish(exec_session: ExecSession, status: str, reason: str) -> ExecSession:
    """Mark a running row stopped/failed (only the first caller wins), update meta.json, drop the workdir."""
    ExecSession.objects.filter(pk=exec_session.pk, status=RUNNING).update(
        status=status, stop_reason=reason[:40], stopped_at=timezone.now()
    )
    finished = _fresh(exec_session)
    audit_write_meta(finished)
    session_dir = Path(finished.workdir).parent if finished.workdir else None
    if finished.status != RUNNING and session_dir is not None and session_dir.name == str(finished.pk):
        # The workspace goes with the session; code and outputs stay in the audit trail.
        shutil.rmtree(session_dir, ignore_errors=True)
    return finished


# --- the reaper ------------------------------------------------------------------------------------------
def exec_sessions_reap() -> dict[str, list[str]]:
    """Scheduled on every machine: stop its sessions past their TTL or idle timeout (idle: not while an
    execution runs), or whose chat session has ended (all of them when execution sessions are disabled),
    mark those whose host process is gone, and kill sandbox processes of this deployment that belong to no
    running session (leftovers of a crash or a restart).

    Returns the ids acted on: ``{"stopped", "failed", "orphans"}`` (orphans: process ids).
    """
    summary: dict[str, list[str]] = {"stopped": [], "failed": [], "orphans": []}
    now = timezone.now()
    rows = ExecSession.all_tenants_unsafe.filter(status=RUNNING, host=this_host()).select_related(
        "organization", "session"
    )
    for row in rows:
        try:
            with tenant_context(row.organization):
                finished = _reap_one(row, now)
        except Exception:  # one broken session must not stop the sweep
            logger.exception("reaping execution session %s failed", row.pk)
            continue
        if finished is not None:
            key = "failed" if finished.status == ExecSessionStatus.FAILED else "stopped"
            summary[key].append(str(finished.pk))
    summary["orphans"] = [str(pid) for pid in kill_leftover_processes()]
    return summary


def _idle(row: ExecSession, now: datetime) -> bool:
    """Whether a session whose ``last_used_at`` is past its idle timeout is really idle.

    ``last_used_at`` is written when an execution starts and when it ends, so an execution that runs longer
    than the idle timeout looks idle while it runs: ask the host, which knows (and spares itself the same
    way). A host that does not answer is not busy, and is stopped as before. Then read ``last_used_at``
    again: an execution may have ended since the sweep read the row.
    """
    if row.pid is not None:
        try:
            if ExecHostClient(row).ping().get("busy"):
                return False
        except HostError:
            pass
    last_used = ExecSession.objects.filter(pk=row.pk).values_list("last_used_at", flat=True).first()
    return (last_used or row.started_at) + timedelta(seconds=row.idle_timeout_seconds) <= now


def _reap_one(row: ExecSession, now: datetime) -> ExecSession | None:
    last_used = row.last_used_at or row.started_at
    if not settings.ENABLE_EXEC_SESSIONS:
        return exec_session_stop(row, reason="disabled")
    if row.session is not None and row.session.status == SessionStatus.ENDED:
        return exec_session_stop(row, reason="session_ended")  # its tools cannot be called any more
    if row.started_at + timedelta(seconds=row.ttl_seconds) <= now:
        return exec_session_stop(row, reason="ttl")
    if last_used + timedelta(seconds=row.idle_timeout_seconds) <= now and _idle(row, now):
        return exec_session_stop(row, reason="idle")
    if row.pid is None:
        if row.started_at + timedelta(seconds=START_GRACE_SECONDS) > now:
            return None  # still starting
        host_ensure_gone(row)
        return _finish(row, ExecSessionStatus.FAILED, "start_lost")
    if not host_process_alive(row.pid, str(row.pk)):
        return _host_lost(row)
    return None
