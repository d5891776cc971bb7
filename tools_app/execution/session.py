"""The persistent-interpreter session machinery shared by all execution drivers.

A session is one long-lived interpreter process (inside bubblewrap, see :mod:`.sandbox`)
running a small REPL wrapper from ``repl/``. The host speaks a framed protocol with it:

* host -> wrapper (stdin): one request per execution, framed by the driver's
  :meth:`ExecutionDriver.encode_request` and tagged with a random per-execution token;
* wrapper -> host (stdout, stderr merged into it): ``__SB_READY__ <pid>`` once at start,
  then for each request the program output followed by ``\\n__SB_END_<token>__ <status>\\n``.

Timeouts: when an execution exceeds its timeout the driver sends SIGINT to the
interpreter's process group and waits ``interrupt_grace`` seconds for the end marker. If it
arrives, the result has ``timed_out=True`` and the context (variables, cwd, ...) is kept.
Otherwise the whole sandbox is killed, the result has ``context_lost=True`` and the session
is *dead*: :meth:`is_alive` is False and further :meth:`exec` calls raise
:class:`SessionDead` until the caller invokes :meth:`restart` (the driver never restarts
on its own, so the caller can tell the user the state was lost).
"""

from __future__ import annotations

import os
import secrets
import select
import signal
import subprocess
import threading
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from . import procutil
from .sandbox import SandboxConfig, SandboxError, build_launch, validate_session_id

DEFAULT_OUTPUT_LIMIT = 64 * 1024
_READY = b"__SB_READY__ "
_TIMEOUT = object()
_EOF = object()


class SessionDead(RuntimeError):
    """The session's interpreter is gone; call ``restart()`` to get a fresh context."""


@dataclass
class ExecResult:
    """Outcome of one execution.

    ``output`` is stdout and stderr interleaved, capped at the driver's output limit
    (``truncated`` then is True). ``exit_code`` is None when the session died or was killed
    during the execution (``context_lost`` is then True).
    """

    output: str
    exit_code: int | None
    timed_out: bool = False
    truncated: bool = False
    duration_ms: int = 0
    context_lost: bool = False

    @property
    def stdout(self) -> str:
        """Alias of :attr:`output` (stderr is merged into it)."""
        return self.output


class _Output:
    """Collects output bytes up to ``limit``, remembering whether anything was dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.truncated = False

    def add(self, chunk: bytes | bytearray) -> None:
        room = self.limit - len(self.data)
        if len(chunk) > room:
            self.truncated = True
        if room > 0:
            self.data += chunk[:room]

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


class ExecutionDriver(ABC):
    """Base class of the per-mode drivers: one persistent interpreter per session.

    Subclasses define :attr:`mode`, :meth:`command` (the interpreter argv inside the
    sandbox) and optionally :meth:`encode_request` / :meth:`extra_env`. ``pid`` is the host
    pid of the top-level session process (bwrap, or the interpreter in unsafe mode): killing
    it ends the whole session.
    """

    mode: ClassVar[str] = ""
    #: Re-send SIGINT during the grace period (bash: each one kills the next foreground job).
    repeat_interrupt: ClassVar[bool] = False
    start_timeout: ClassVar[float] = 20.0
    interrupt_grace: float = 2.0

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        session_id: str | None = None,
        config: SandboxConfig | None = None,
        allow_unsafe: bool = False,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> None:
        self.workdir = Path(workdir)
        self.session_id = validate_session_id(session_id or uuid.uuid4().hex)
        self.config = config or SandboxConfig()
        self.allow_unsafe = allow_unsafe
        self.output_limit = output_limit
        self.sandboxed: bool | None = None  # known after start()
        #: Host uid the session runs as (None: the server's own uid). Files the server puts
        #: into the workdir while the session runs should be chowned to it to be writable.
        self.uid: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._interp_pid: int | None = None
        self._interp_pgid: int | None = None
        self._pending = bytearray()
        self._dead = False
        self._exec_lock = threading.Lock()
        self._proc_lock = threading.RLock()

    # -- to be provided by subclasses ---------------------------------------------------------
    @abstractmethod
    def command(self) -> list[str]:
        """Return the argv of the REPL wrapper process (as run inside the sandbox)."""

    def extra_env(self) -> dict[str, str]:
        """Extra environment variables for the interpreter."""
        return {}

    def encode_request(self, token: str, code: str) -> bytes:
        """Frame one execution request: ``<token> <nbytes>\\n<payload>``."""
        payload = code.encode("utf-8")
        return f"{token} {len(payload)}\n".encode() + payload

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """Host pid of the top-level session process, or None when not started."""
        return self._proc.pid if self._proc is not None else None

    @property
    def interpreter_pid(self) -> int | None:
        """Host pid of the REPL interpreter itself (target of interrupts)."""
        return self._interp_pid

    def is_alive(self) -> bool:
        """True while the interpreter runs and its context is usable."""
        with self._proc_lock:
            return self._proc is not None and not self._dead and self._proc.poll() is None

    def start(self) -> None:
        """Launch the interpreter and wait until its REPL wrapper is ready.

        Raises :class:`~.sandbox.SandboxUnavailable` if bwrap cannot run and the unsafe
        fallback is not allowed, :class:`~.sandbox.SandboxError` if the interpreter fails.
        """
        with self._exec_lock, self._proc_lock:
            if self.is_alive():
                return
            self._terminate()  # leftovers of a dead previous interpreter
            spec = build_launch(
                self.command(),
                workdir=str(self.workdir),
                session_id=self.session_id,
                config=self.config,
                allow_unsafe=self.allow_unsafe,
                extra_env=self.extra_env(),
            )
            self.sandboxed, self.uid = spec.sandboxed, spec.uid
            self._proc = subprocess.Popen(
                spec.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=spec.env,
                cwd=spec.cwd,
                bufsize=0,
                close_fds=True,
                # Own session: terminal/server signals never reach the sandbox, and in unsafe
                # mode the process group id equals the interpreter pid.
                start_new_session=True,
            )
            assert self._proc.stdin is not None
            os.set_blocking(self._proc.stdin.fileno(), False)
            self._dead = False
            ns_pid = self._wait_ready()
            if spec.sandboxed:
                self._interp_pid = self._find_host_pid(ns_pid)
            else:
                self._interp_pid = self._proc.pid
            # bwrap puts the interpreter in the process group of the sandbox's init, which
            # ignores SIGINT (a pid-namespace init only gets signals it handles).
            self._interp_pgid = os.getpgid(self._interp_pid)

    def stop(self) -> None:
        """Kill the session and every process it started, then wait until they are gone.

        Safe to call from another thread while :meth:`exec` runs (that call then returns a
        ``context_lost`` result and releases the pipes itself).
        """
        with self._proc_lock:
            self._kill_processes()
            self._dead = True
        # Closing the pipes under a running exec() could let their fd numbers be reused
        # while it still polls them, so only close them when no execution is in progress.
        if self._exec_lock.acquire(blocking=False):
            try:
                self._close()
            finally:
                self._exec_lock.release()

    def restart(self) -> None:
        """Stop the session (if needed) and start a fresh interpreter; state is lost."""
        self.stop()
        self.start()

    def __enter__(self) -> ExecutionDriver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- execution ----------------------------------------------------------------------------
    def exec(self, code: str, timeout: float = 30.0) -> ExecResult:
        """Run ``code`` in the persistent context and return its output and status."""
        with self._exec_lock:
            if not self.is_alive():
                raise SessionDead(f"{self.mode} session {self.session_id} is not running")
            token = secrets.token_hex(8)
            marker = f"\n__SB_END_{token}__ ".encode()
            out = _Output(self.output_limit)
            started = time.monotonic()
            timed_out = False
            request = self.encode_request(token, code)
            status: object = _EOF if not self._write(request, started + timeout) else None
            if status is None:
                status = self._collect(marker, out, started + timeout)
            if status is _TIMEOUT:
                timed_out = True
                status = self._interrupt_and_wait(marker, out)
            context_lost = status in (_EOF, _TIMEOUT)
            if context_lost:
                out.add(self._pending)
                self._terminate()
            return ExecResult(
                output=out.text(),
                exit_code=None if context_lost else status,  # type: ignore[arg-type]
                timed_out=timed_out,
                truncated=out.truncated,
                duration_ms=int((time.monotonic() - started) * 1000),
                context_lost=context_lost,
            )

    def interrupt(self) -> None:
        """Send SIGINT to the interpreter's process group (like Ctrl-C in a terminal)."""
        target = self._interp_pgid
        if target is None or not self.is_alive():
            return
        try:
            # The group holds the interpreter and its foreground children; background jobs
            # of bash ignore SIGINT, as in any non-interactive shell.
            os.killpg(target, signal.SIGINT)
        except (ProcessLookupError, PermissionError):
            pass

    # -- internals ----------------------------------------------------------------------------
    def _interrupt_and_wait(self, marker: bytes, out: _Output) -> object:
        grace_end = time.monotonic() + self.interrupt_grace
        while True:
            self.interrupt()
            step_end = min(grace_end, time.monotonic() + 0.25) if self.repeat_interrupt else grace_end
            status = self._collect(marker, out, step_end)
            if status is not _TIMEOUT or time.monotonic() >= grace_end:
                return status

    def _write(self, data: bytes, deadline: float) -> bool:
        """Write a request; False if the interpreter is gone or does not read it in time."""
        assert self._proc is not None and self._proc.stdin is not None
        fd = self._proc.stdin.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(remaining * 1000):
                return False
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                continue
            except OSError:  # EPIPE: the interpreter has exited
                return False
        return True

    def _read_chunk(self, deadline: float) -> bytes | None:
        """Read what is available before ``deadline``: None on timeout, b"" at EOF."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        poller = select.poll()  # poll, not select: server fds may exceed FD_SETSIZE
        poller.register(fd, select.POLLIN)
        if not poller.poll(remaining * 1000):
            return None
        try:
            return os.read(fd, 65536)
        except OSError:
            return b""

    def _collect(self, marker: bytes, out: _Output, deadline: float) -> object:
        """Move output into ``out`` until the end marker (returns its status), EOF or timeout."""
        while True:
            idx = self._pending.find(marker)
            if idx >= 0:
                end = self._pending.find(b"\n", idx + len(marker))
                if end >= 0:
                    out.add(self._pending[:idx])
                    raw = bytes(self._pending[idx + len(marker) : end])
                    # Anything after the marker (background jobs) belongs to the next result.
                    del self._pending[: end + 1]
                    try:
                        return int(raw)
                    except ValueError:
                        return 1
            else:
                keep = len(marker) - 1  # a marker may straddle two reads
                if len(self._pending) > keep:
                    out.add(self._pending[:-keep])
                    del self._pending[:-keep]
            chunk = self._read_chunk(deadline)
            if chunk is None:
                return _TIMEOUT
            if not chunk:
                return _EOF
            self._pending += chunk

    def _wait_ready(self) -> int:
        deadline = time.monotonic() + self.start_timeout
        while True:
            idx = self._pending.find(_READY)
            if idx >= 0:
                end = self._pending.find(b"\n", idx)
                if end >= 0:
                    ns_pid = int(self._pending[idx + len(_READY) : end])
                    del self._pending[: end + 1]
                    return ns_pid
            chunk = self._read_chunk(deadline)
            if not chunk:
                noise = self._pending.decode("utf-8", errors="replace").strip()
                self._terminate()
                why = "timed out" if chunk is None else "exited"
                raise SandboxError(f"{self.mode} session failed to start ({why}): {noise or 'no output'}")
            self._pending += chunk

    def _find_host_pid(self, ns_pid: int) -> int:
        assert self._proc is not None
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            host_pid = procutil.host_pid_for(self._proc.pid, ns_pid)
            if host_pid is not None:
                return host_pid
            time.sleep(0.01)
        self._terminate()
        raise SandboxError(f"cannot find the {self.mode} interpreter of session {self.session_id}")

    def _terminate(self) -> None:
        """Kill everything and release the pipes (caller holds the exec lock)."""
        with self._proc_lock:
            self._kill_processes()
            self._dead = True
            self._close()

    def _kill_processes(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                # bwrap: its death tears down the pid namespace (--die-with-parent in the
                # sandbox init). Unsafe mode: the interpreter leads its own process group.
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.kill()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        # Stragglers that left the process group (setsid) still carry the session marker.
        for _ in range(5):
            pids = procutil.session_pids(self.session_id)
            if not pids:
                break
            procutil.kill_pids(pids)
            procutil.wait_gone(pids, 1.0)

    def _close(self) -> None:
        proc = self._proc
        if proc is not None:
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass
        self._proc = None
        self._interp_pid = None
        self._interp_pgid = None
        self._pending.clear()
