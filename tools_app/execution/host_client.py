"""Server side of the exec host protocol: start a host (:func:`spawn_host`) and talk to it
(:class:`ExecHostClient`). See :mod:`.host` for the protocol. Pure Python, no Django: the service layer
maps settings and errors.

Execution sessions are host-local: the socket lives on the machine that runs the session, so in a
scale-out deployment requests for a session must reach that machine (the service checks the host name
recorded on the session).
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import tools_app

from . import procutil
from .host import socket_path_for
from .sandbox import MARKER_ENV, SANDBOX_PATH, SandboxConfig, SandboxError, SandboxUnavailable

# Longest a Unix socket path may be on Linux (sun_path is 108 bytes, NUL included).
_MAX_SOCKET_PATH = 107
_PROJECT_ROOT = str(Path(tools_app.__file__).resolve().parent.parent)
_HOST_MODULE = "tools_app.execution.host"


class HostError(RuntimeError):
    """The host answered with an error (``kind``: busy, stopped, invalid, bad_request)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class HostUnreachable(HostError):
    """Nothing listens on the session's socket: the host process is gone."""

    def __init__(self, message: str) -> None:
        super().__init__("unreachable", message)


class HostTimeout(HostError):
    """The host accepted the request but did not answer in time."""

    def __init__(self, message: str) -> None:
        super().__init__("timeout", message)


@dataclass(frozen=True)
class HostInfo:
    pid: int
    driver_pid: int | None
    sandboxed: bool


def spawn_host(
    *,
    session_id: str,
    mode: str,
    workdir: str | os.PathLike[str],
    deadline: float,
    idle_seconds: float,
    config: SandboxConfig,
    allow_unsafe: bool,
    output_limit: int,
    log_path: str | os.PathLike[str],
    start_timeout: float = 60.0,
) -> HostInfo:
    """Start a detached exec host for a session and wait until its interpreter is ready.

    Raises :class:`SandboxUnavailable` when bwrap cannot run (and ``allow_unsafe`` is off) and
    :class:`SandboxError` for any other start failure, with the host's own explanation.
    """
    sock = socket_path_for(workdir)
    if len(os.fsencode(str(sock))) > _MAX_SOCKET_PATH:
        raise SandboxError(f"the control socket path {sock} is too long; use a shorter EXEC_ROOT")
    read_fd, write_fd = os.pipe()
    argv = [
        sys.executable,
        "-m",
        _HOST_MODULE,
        f"--session-id={session_id}",
        f"--mode={mode}",
        f"--workdir={workdir}",
        f"--deadline={deadline}",
        f"--idle={idle_seconds}",
        f"--config={json.dumps(asdict(config))}",
        f"--output-limit={output_limit}",
        f"--ready-fd={write_fd}",
    ]
    if allow_unsafe:
        argv.append("--allow-unsafe")
    # Nothing of the server's environment (secrets) reaches the host; the marker lets the reaper find
    # it like the sandbox processes.
    env = {"PATH": SANDBOX_PATH, "PYTHONPATH": _PROJECT_ROOT, "LANG": "C.UTF-8", MARKER_ENV: session_id}
    try:
        with open(log_path, "ab") as log:
            intermediate = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                cwd="/",
                pass_fds=(write_fd,),
                start_new_session=True,
            )
    finally:
        os.close(write_fd)
    try:
        intermediate.wait(timeout=start_timeout)  # exits as soon as the host has forked
        line = _read_report(read_fd, time.monotonic() + start_timeout)
    except subprocess.TimeoutExpired:
        line = b""
    finally:
        os.close(read_fd)
    try:
        report = json.loads(line)
    except ValueError:
        report = {"ok": False, "kind": "error", "error": _log_tail(log_path) or "the exec host did not start"}
    if not report.get("ok"):
        error = SandboxUnavailable if report.get("kind") == "unavailable" else SandboxError
        raise error(str(report.get("error") or "the exec host did not start"))
    return HostInfo(
        pid=int(report["pid"]), driver_pid=report.get("driver_pid"), sandboxed=bool(report["sandboxed"])
    )


def _read_report(fd: int, deadline: float) -> bytes:
    data = bytearray()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(remaining * 1000):
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _log_tail(log_path: str | os.PathLike[str], size: int = 2000) -> str:
    try:
        with open(log_path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - size))
            return fh.read().decode("utf-8", errors="replace").strip()
    except OSError:
        return ""


def host_process_alive(pid: int | None, session_id: str) -> bool:
    """True if ``pid`` is a live exec host of ``session_id`` (not a recycled pid, not a zombie)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if _HOST_MODULE.encode() not in cmdline or f"--session-id={session_id}".encode() not in cmdline:
        return False
    return procutil.wait_gone([pid], 0) == [pid]


class ExecHostClient:
    """Talk to the exec host of one session (anything with ``id`` and ``workdir``, e.g. an ExecSession)."""

    connect_timeout = 5.0

    def __init__(self, exec_session: Any) -> None:
        self.session_id = str(exec_session.id)
        self.socket_path = socket_path_for(exec_session.workdir)

    def ping(self, timeout: float = 5.0) -> dict[str, Any]:
        return self.request({"op": "ping"}, timeout)

    def exec(self, code: str, *, timeout: float, wait: float, grace: float = 15.0) -> dict[str, Any]:
        """Run code; waits up to ``wait`` for a running execution to finish, then ``timeout`` for this one."""
        request = {"op": "exec", "code": code, "timeout": timeout, "wait": wait}
        return self.request(request, wait + timeout + grace)

    def stop(self, reason: str, timeout: float = 30.0) -> dict[str, Any]:
        return self.request({"op": "stop", "reason": reason}, timeout)

    def request(self, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request and return the host's answer; raises a :class:`HostError` otherwise."""
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.settimeout(self.connect_timeout)
            try:
                conn.connect(str(self.socket_path))
            except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as exc:
                raise HostUnreachable(f"the exec host of session {self.session_id} is gone ({exc})") from exc
            except TimeoutError as exc:
                raise HostTimeout(f"the exec host of session {self.session_id} does not accept") from exc
            conn.settimeout(timeout)
            try:
                conn.sendall(json.dumps(payload).encode() + b"\n")
                answer = _read_answer(conn)
            except TimeoutError as exc:
                raise HostTimeout(f"the exec host of session {self.session_id} did not answer") from exc
            except OSError as exc:
                raise HostUnreachable(
                    f"the exec host of session {self.session_id} went away ({exc})"
                ) from exc
        finally:
            conn.close()
        if not answer:
            raise HostUnreachable(f"the exec host of session {self.session_id} closed the connection")
        try:
            reply = json.loads(answer)
        except ValueError as exc:
            raise HostError("bad_reply", f"unreadable answer from the exec host: {exc}") from exc
        if not reply.get("ok"):
            raise HostError(str(reply.get("error") or "error"), str(reply.get("message") or "host error"))
        return reply


def _read_answer(conn: socket.socket) -> bytes:
    data = bytearray()
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return bytes(data)
