"""Execution sessions on this machine: directories, sandbox limits, and making sure processes are gone.

The state changes live in :mod:`tools_app.services.exec_sessions`; this module only deals with what the
operating system holds for a session (its exec host, its sandbox processes, its directory) and never
writes to the database.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import stat
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from tools_app.execution import SandboxConfig, procutil
from tools_app.execution.host_client import host_process_alive
from tools_app.models import ExecSession, ExecSessionStatus

logger = logging.getLogger(__name__)

#: A running row without a host pid (or a sandbox whose row is not visible yet) is still starting.
START_GRACE_SECONDS = 60
_CHAT_LOCK_STRIPES = 64


def this_host() -> str:
    """The name recorded on the sessions this machine runs."""
    return socket.gethostname()


def exec_root() -> Path:
    """EXEC_ROOT, world-searchable: a session's sandbox uid must traverse it to reach its workdir."""
    root = Path(settings.EXEC_ROOT)
    root.mkdir(mode=0o711, parents=True, exist_ok=True)
    mode = root.stat().st_mode
    if not mode & stat.S_IXOTH:
        os.chmod(root, stat.S_IMODE(mode) | 0o011)
    return root


def sandbox_config() -> SandboxConfig:
    """The sandbox limits from the settings."""
    return SandboxConfig(
        memory_mb=settings.EXEC_MEMORY_MB,
        cpu_seconds=settings.EXEC_CPU_SECONDS,
        max_processes=settings.EXEC_MAX_PROCESSES,
        max_file_mb=settings.EXEC_MAX_FILE_MB,
    )


@contextmanager
def chat_start_lock(chat_session_id: Any) -> Iterator[None]:
    """Serialize finding-or-starting the exec session of one chat session on this machine.

    A file lock (processes, not threads, are what race here), striped so the lock files stay few.
    """
    stripe = zlib.crc32(str(chat_session_id).encode()) % _CHAT_LOCK_STRIPES
    locks = exec_root() / ".locks"
    locks.mkdir(mode=0o700, exist_ok=True)
    with open(locks / f"chat-{stripe:02d}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def host_ensure_gone(exec_session: ExecSession) -> None:
    """Wait for the session's host to exit (SIGKILL after a grace); kill anything left with its marker."""
    sid = str(exec_session.pk)
    pid = exec_session.pid
    if pid and host_process_alive(pid, sid) and procutil.wait_gone([pid], 5):
        procutil.kill_pids([pid])
        procutil.wait_gone([pid], 5)
    for _ in range(5):
        pids = procutil.session_pids(sid)
        if not pids:
            break
        procutil.kill_pids(pids)
        procutil.wait_gone(pids, 2)


def kill_leftover_processes() -> list[int]:
    """Kill marked processes of this deployment whose session is not running; return their pids.

    "Of this deployment": the id is an ExecSession row of this database, or has a directory under
    EXEC_ROOT older than the start grace. Sandboxes of other deployments or test runs on the same
    machine are left alone. Statuses are read after the /proc scan, so a session that starts during
    the sweep (its row is committed before its processes exist) is never taken for a leftover.
    """
    marked = {pid: procutil.session_of(pid) for pid in procutil.find_orphans(())}
    ids = {sid for sid in marked.values() if sid and _is_uuid(sid)}
    if not ids:
        return []
    rows = ExecSession.all_tenants_unsafe.filter(pk__in=ids).values_list("pk", "status")
    statuses = {str(pk): status for pk, status in rows}
    root = Path(settings.EXEC_ROOT)
    grace_start = timezone.now().timestamp() - START_GRACE_SECONDS

    def leftover(sid: str | None) -> bool:
        if sid not in ids:
            return False
        if sid in statuses:
            return statuses[sid] != ExecSessionStatus.RUNNING
        try:
            return (root / sid).stat().st_mtime < grace_start
        except OSError:
            return False

    pids = [pid for pid, sid in marked.items() if leftover(sid)]
    if pids:
        logger.warning("killing %d leftover execution-session processes: %s", len(pids), pids)
        procutil.kill_pids(pids)
        procutil.wait_gone(pids, 5)
    return pids


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
