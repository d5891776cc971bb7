"""/proc helpers: locate session processes on the host and clean up orphans.

Every process started for an execution session carries ``SWITCHBOARD_EXEC_SESSION=<id>``
in its environment (bwrap also has ``--setenv SWITCHBOARD_EXEC_SESSION <id>`` in its argv),
so after a server restart leftover sandboxes can be found and killed with
:func:`kill_orphans`.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable, Iterator

from .sandbox import MARKER_ENV

_MARKER_PREFIX = MARKER_ENV.encode() + b"="


def iter_pids() -> Iterator[int]:
    """Yield the pids of all processes visible in /proc."""
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def parent_pid(pid: int) -> int | None:
    """Return the parent pid of ``pid`` (None if it is gone)."""
    data = _read(f"/proc/{pid}/stat")
    if not data:
        return None
    # The command name may contain spaces and parentheses; fields resume after the last ')'.
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[1])


def descendants(root: int) -> list[int]:
    """Return all live descendants of ``root`` (not including ``root``)."""
    children: dict[int, list[int]] = {}
    for pid in iter_pids():
        ppid = parent_pid(pid)
        if ppid is not None:
            children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def host_pid_for(root: int, ns_pid: int) -> int | None:
    """Map a pid as seen inside the sandbox's pid namespace to the host pid.

    Searches the descendants of ``root`` (the bwrap process) for the one whose innermost
    ``NSpid`` entry equals ``ns_pid``.
    """
    for pid in descendants(root):
        status = _read(f"/proc/{pid}/status") or b""
        for line in status.splitlines():
            if line.startswith(b"NSpid:"):
                if int(line.split()[-1]) == ns_pid:
                    return pid
                break
    return None


def session_of(pid: int) -> str | None:
    """Return the execution-session id a process belongs to, or None.

    Looks at the environment first, then at bwrap's argv (``--setenv MARKER <id>``).
    """
    environ = _read(f"/proc/{pid}/environ") or b""
    for entry in environ.split(b"\0"):
        if entry.startswith(_MARKER_PREFIX):
            return entry[len(_MARKER_PREFIX) :].decode(errors="replace")
    argv = (_read(f"/proc/{pid}/cmdline") or b"").split(b"\0")
    for i in range(len(argv) - 2):
        if argv[i] == b"--setenv" and argv[i + 1] == MARKER_ENV.encode():
            return argv[i + 2].decode(errors="replace")
    return None


def session_pids(session_id: str) -> list[int]:
    """Return the host pids of all live processes tagged with ``session_id``."""
    me = os.getpid()
    return [pid for pid in iter_pids() if pid != me and session_of(pid) == session_id]


def find_orphans(known_ids: Iterable[str]) -> list[int]:
    """Return pids of session processes whose session id is not in ``known_ids``."""
    known = set(known_ids)
    me = os.getpid()
    orphans = []
    for pid in iter_pids():
        if pid == me:
            continue
        sid = session_of(pid)
        if sid is not None and sid not in known:
            orphans.append(pid)
    return orphans


def kill_pids(pids: Iterable[int], sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to each pid, ignoring processes that are already gone."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def wait_gone(pids: Iterable[int], timeout: float = 2.0) -> list[int]:
    """Wait until the given processes have exited; return those still alive at the deadline.

    A zombie (already dead, not yet reaped) counts as gone.
    """
    pending = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        pending = [pid for pid in pending if _alive(pid)]
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    data = _read(f"/proc/{pid}/stat")
    if not data:
        return False
    state = data[data.rindex(b")") + 2 : data.rindex(b")") + 3]
    return state not in (b"Z", b"X")


def kill_orphans(known_ids: Iterable[str], timeout: float = 2.0) -> list[int]:
    """SIGKILL every session process not in ``known_ids``; return the pids that were killed.

    Killing the outer bwrap process tears down its whole pid namespace; processes of
    unsandboxed (unsafe-mode) sessions are killed individually.
    """
    killed: list[int] = []
    # Loop because killing may race with processes forking; bounded to avoid spinning.
    for _ in range(5):
        pids = find_orphans(known_ids)
        if not pids:
            break
        kill_pids(pids)
        killed.extend(p for p in pids if p not in killed)
        wait_gone(pids, timeout)
    return killed
