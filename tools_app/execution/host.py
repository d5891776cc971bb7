"""The exec host: one detached process per execution session that owns its sandboxed interpreter.

Requests for a session come from several processes (the ASGI server for REST, queue workers for the
agent's ``python``/``shell`` tools), but an interpreter is a child of whoever started it. So the server
starts ``python -m tools_app.execution.host ...`` (see :func:`.host_client.spawn_host`), which detaches
(double fork: it is nobody's child and outlives the requesting process), starts the driver and serves
a JSON-lines protocol on a Unix socket in a server-only directory (0700, outside the sandboxed
workdir). One request per connection, one JSON object per line each way:

* ``{"op": "ping"}`` -> ``{"ok": true, "pid", "driver_pid", "alive", "sandboxed", "busy", "count"}``
* ``{"op": "exec", "code", "timeout", "wait"}`` -> ``{"ok": true, "number", "started_at", "result"}``
  (executions are serialized by a lock; ``wait`` bounds the wait for it, then ``error: "busy"``)
* ``{"op": "stop", "reason"}`` -> ``{"ok": true, "reason"}``; the host then exits.

Errors are ``{"ok": false, "error": "busy" | "stopped" | "invalid" | "bad_request", "message"}``.

The host also stops itself (killing the sandbox) when no execution arrived for ``--idle`` seconds or
the ``--deadline`` (epoch seconds, the session's TTL) passed, and on SIGTERM: belt and braces with the
scheduled reaper. Before exiting it writes ``exit.json`` (``{"reason", "at"}``) next to the socket so
that whoever finds it gone can tell a timeout from a crash. Pure Python: no Django, no database.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .drivers import get_driver
from .sandbox import SandboxConfig, SandboxUnavailable
from .session import ExecutionDriver

CONTROL_DIR_NAME = "control"
SOCKET_NAME = "sock"
EXIT_FILE_NAME = "exit.json"
MAX_REQUEST_BYTES = 8 * 1024 * 1024
_TICK = 0.25


def control_dir_for(workdir: str | os.PathLike[str]) -> Path:
    """The server-only directory next to a session's workdir: ``<session dir>/control``."""
    return Path(workdir).parent / CONTROL_DIR_NAME


def socket_path_for(workdir: str | os.PathLike[str]) -> Path:
    return control_dir_for(workdir) / SOCKET_NAME


def exit_file_for(workdir: str | os.PathLike[str]) -> Path:
    return control_dir_for(workdir) / EXIT_FILE_NAME


def read_exit_file(workdir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What a host that exited on its own wrote before exiting, or None (crash, or never started)."""
    try:
        data = json.loads(exit_file_for(workdir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class ExecHost:
    """Serve one driver over a Unix socket until stopped, idle or past the deadline."""

    def __init__(
        self,
        driver: ExecutionDriver,
        socket_path: Path,
        *,
        deadline: float,
        idle_seconds: float,
        count: int = 0,
    ) -> None:
        self.driver = driver
        self.socket_path = socket_path
        self.deadline = deadline
        self.idle_seconds = idle_seconds
        self.count = count
        self.reason = ""
        self._server: socket.socket | None = None
        self._exec_lock = threading.Lock()
        # Guards stopping against a concurrent restart, so a stopped host never starts a new sandbox.
        self._state_lock = threading.RLock()
        self._stopping = False
        self._stopped = threading.Event()
        self._busy = False
        self._last_used = time.monotonic()
        self._signal_reason = ""
        self._handlers: list[threading.Thread] = []
        # bwrap runs with --die-with-parent, i.e. PR_SET_PDEATHSIG, which fires when the *thread* that
        # started it exits: interpreters are (re)started on this one long-lived thread, never on a
        # short-lived request thread.
        self._starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="exec-host-starter")

    # -- set-up and main loop ----------------------------------------------------------------------
    def bind(self) -> None:
        """Create the 0700 control directory and listen on its socket (only the server's uid may connect)."""
        control = self.socket_path.parent
        control.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(control, 0o700)
        if self.socket_path.is_socket():
            self.socket_path.unlink()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.socket_path))
        os.chmod(self.socket_path, 0o600)
        server.listen(16)
        server.settimeout(_TICK)
        self._server = server

    def serve(self) -> str:
        """Accept requests until the host stops; return the reason it stopped."""
        assert self._server is not None
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        while not self._stopped.is_set():
            self._check_limits()
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopped.is_set():
                    break
                raise
            handler = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self._handlers = [t for t in self._handlers if t.is_alive()] + [handler]
            handler.start()
        self._server.close()
        # Let in-flight answers (the stop reply, an interrupted exec) reach their clients.
        for handler in self._handlers:
            handler.join(timeout=5)
        self._starter.shutdown(wait=False)
        return self.reason

    def shutdown(self, reason: str) -> None:
        """Stop the sandbox (safe while an exec runs), record why, and end the main loop. Idempotent."""
        with self._state_lock:
            if self._stopping:
                return
            self._stopping = True
            self.reason = reason
            self.driver.stop()
            try:
                self.socket_path.unlink()
            except OSError:
                pass
            exit_file = self.socket_path.parent / EXIT_FILE_NAME
            exit_file.write_text(json.dumps({"reason": reason, "at": time.time()}), encoding="utf-8")
            self._stopped.set()

    def _on_signal(self, signum: int, frame: object) -> None:
        self._signal_reason = "terminated"

    def _check_limits(self) -> None:
        if self._signal_reason:
            self.shutdown(self._signal_reason)
        elif time.time() >= self.deadline:
            self.shutdown("ttl")
        elif not self._busy and time.monotonic() - self._last_used >= self.idle_seconds:
            self.shutdown("idle")

    # -- requests --------------------------------------------------------------------------------------
    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                if not _peer_allowed(conn):
                    return
                conn.settimeout(30)
                request = _read_line(conn)
                conn.settimeout(None)
                reply = self._dispatch(json.loads(request))
            except (OSError, ValueError) as exc:
                reply = {"ok": False, "error": "bad_request", "message": str(exc)}
            try:
                conn.sendall(json.dumps(reply).encode() + b"\n")
            except OSError:
                pass  # the client gave up; the execution is still counted

    def _dispatch(self, request: Any) -> dict[str, Any]:
        op = request.get("op") if isinstance(request, dict) else None
        if op == "ping":
            return {
                "ok": True,
                "pid": os.getpid(),
                "driver_pid": self.driver.pid,
                "alive": self.driver.is_alive(),
                "sandboxed": self.driver.sandboxed,
                "busy": self._busy,
                "count": self.count,
                "stopping": self._stopping,
            }
        if op == "exec":
            return self._exec(request)
        if op == "stop":
            self.shutdown(str(request.get("reason") or "user")[:40])
            return {"ok": True, "reason": self.reason}
        return {"ok": False, "error": "bad_request", "message": f"unknown op {op!r}"}

    def _exec(self, request: dict[str, Any]) -> dict[str, Any]:
        code, timeout = request.get("code"), request.get("timeout")
        if not isinstance(code, str) or not isinstance(timeout, (int, float)) or timeout <= 0:
            return {"ok": False, "error": "bad_request", "message": "exec needs code and a timeout > 0"}
        if not self._exec_lock.acquire(timeout=max(0.0, float(request.get("wait") or 0))):
            return {"ok": False, "error": "busy", "message": "another execution is still running"}
        try:
            self._busy = True
            started = time.time()
            lost_before = not self.driver.is_alive()
            # The interpreter may have died between executions (e.g. its CPU budget ran out).
            if self._stopping or (lost_before and not self._restart_unless_stopping()):
                return {"ok": False, "error": "stopped", "message": f"the session stopped ({self.reason})"}
            try:
                result = self.driver.exec(code, timeout=float(timeout))
            except ValueError as exc:  # code the driver cannot frame (NUL bytes for the shell)
                return {"ok": False, "error": "invalid", "message": str(exc)}
            if lost_before:
                result.context_lost = True
                result.output = "[the previous interpreter had exited: state was reset]\n" + result.output
            if result.context_lost:
                # A killed interpreter is replaced at once: the next execution finds a fresh context.
                self._restart_unless_stopping()
            self.count += 1
            return {"ok": True, "number": self.count, "started_at": started, "result": asdict(result)}
        finally:
            self._busy = False
            self._last_used = time.monotonic()
            self._exec_lock.release()

    def _restart_unless_stopping(self) -> bool:
        """Start a fresh interpreter; False (and the host stops) if stopping or the restart fails."""
        with self._state_lock:
            if self._stopping:
                return False
            try:
                self._starter.submit(self.driver.restart).result()
                return True
            except Exception:  # noqa: BLE001 (any failure here means the session cannot go on)
                self.shutdown("failed")
                return False


def _peer_allowed(conn: socket.socket) -> bool:
    """Only the server's own uid (or root) may drive a session, whatever the socket's permissions."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid in (0, os.geteuid())


def _read_line(conn: socket.socket) -> bytes:
    data = bytearray()
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST_BYTES:
            raise ValueError("request too large")
    return bytes(data)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools_app.execution.host")
    parser.add_argument("--session-id", required=True)
    parser.add_argument("--mode", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--deadline", type=float, required=True, help="epoch seconds: the session's TTL")
    parser.add_argument("--idle", type=float, required=True, help="seconds without an execution")
    parser.add_argument("--config", default="{}", help="SandboxConfig fields as JSON")
    parser.add_argument("--output-limit", type=int, default=64 * 1024)
    parser.add_argument("--count", type=int, default=0, help="executions already numbered")
    parser.add_argument("--allow-unsafe", action="store_true")
    parser.add_argument("--ready-fd", type=int, required=True, help="pipe for the one-line start report")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    # Detach: the launching process reaps the intermediate at once and the host is nobody's child,
    # so a restart of the ASGI server or a worker does not take the session with it.
    if os.fork():
        os._exit(0)
    with os.fdopen(args.ready_fd, "w", encoding="utf-8") as ready:
        driver = get_driver(args.mode)(
            args.workdir,
            session_id=args.session_id,
            config=SandboxConfig(**json.loads(args.config)),
            allow_unsafe=args.allow_unsafe,
            output_limit=args.output_limit,
        )
        host = ExecHost(
            driver,
            socket_path_for(args.workdir),
            deadline=args.deadline,
            idle_seconds=args.idle,
            count=args.count,
        )
        try:
            host.bind()
            driver.start()
        except Exception as exc:  # noqa: BLE001 (reported to the launcher, which maps it to an error)
            driver.stop()
            kind = "unavailable" if isinstance(exc, SandboxUnavailable) else "error"
            ready.write(json.dumps({"ok": False, "kind": kind, "error": str(exc)}) + "\n")
            return 1
        report = {"ok": True, "pid": os.getpid(), "driver_pid": driver.pid, "sandboxed": driver.sandboxed}
        ready.write(json.dumps(report) + "\n")
    host.serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
