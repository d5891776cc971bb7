"""Execution-session drivers: persistent contexts, timeouts, output caps and sandbox containment.

Pure Python (no Django). Run alone with::

    .venv/bin/python -m pytest -p no:django --noconftest tests/tools_app/test_exec_drivers.py -q
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.runtime import wait_until
from tools_app.execution import (
    DRIVERS,
    MARKER_ENV,
    ExecResult,
    ExecutionDriver,
    SandboxConfig,
    SandboxUnavailable,
    SessionDead,
    get_driver,
    kill_orphans,
    procutil,
    sandbox_available,
    session_pids,
)
from tools_app.execution.sandbox import bwrap_args

REPO_ROOT = Path(__file__).resolve().parents[2]
SANDBOX_OK, SANDBOX_REASON = sandbox_available()
needs_sandbox = pytest.mark.skipif(not SANDBOX_OK, reason=f"bubblewrap unusable here: {SANDBOX_REASON}")
needs_node = pytest.mark.skipif("node" not in DRIVERS, reason="node is not installed on this host")
# Small limits keep the abuse probes fast; they are still far below what could hurt the host.
PROBE_CONFIG = SandboxConfig(memory_mb=256, cpu_seconds=60, max_processes=32, max_file_mb=16)
NO_BWRAP = SandboxConfig(bwrap_path="/nonexistent/bwrap", max_processes=32, max_file_mb=16)
SECRET = "sb-test-secret-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def work_root() -> Iterator[Path]:
    # pytest's tmp_path lives under a 0700 directory; the sandbox uid must be able to
    # traverse the parents of its workdir, as in production (session root is o+x).
    root = Path(tempfile.mkdtemp(prefix="sb-exec-tests-", dir="/tmp"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def session_factory(
    work_root: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., ExecutionDriver]]:
    # A secret in the server's environment must never be visible inside a session.
    monkeypatch.setenv("SWITCHBOARD_TEST_SECRET", SECRET)
    started: list[ExecutionDriver] = []

    def make(mode: str, **kwargs: object) -> ExecutionDriver:
        kwargs.setdefault("config", PROBE_CONFIG)
        workdir = work_root / uuid.uuid4().hex[:12]
        driver = get_driver(mode)(workdir, **kwargs)  # type: ignore[arg-type]
        driver.interrupt_grace = 1.0
        started.append(driver)
        driver.start()
        return driver

    yield make
    for driver in started:
        driver.stop()


def run_ok(driver: ExecutionDriver, code: str, timeout: float = 10) -> str:
    result = driver.exec(code, timeout=timeout)
    assert result.exit_code == 0, result
    return result.output


# -- registry and API -------------------------------------------------------------------------------


def test_registry() -> None:
    assert {"shell", "python"} <= set(DRIVERS)
    assert ("node" in DRIVERS) == bool(shutil.which("node"))
    assert get_driver("python").mode == "python"
    with pytest.raises(KeyError, match="available"):
        get_driver("cobol")


def test_bwrap_command_exposes_only_what_is_needed(tmp_path: Path) -> None:
    args = bwrap_args("/usr/bin/bwrap", SandboxConfig(), "sid", str(tmp_path), {"HOME": "/workspace"})
    for flag in (
        "--unshare-net",
        "--unshare-pid",
        "--unshare-user",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
    ):
        assert flag in args
    sources = [args[i + 1] for i, a in enumerate(args) if a in ("--bind", "--ro-bind", "--ro-bind-try")]
    assert str(tmp_path) in sources
    assert not any(
        s in ("/", "/work", "/root", "/home", "/etc") or s.startswith(("/work", "/root"))
        for s in sources
        if s != str(tmp_path)
    )
    assert "--unshare-net" not in bwrap_args("/usr/bin/bwrap", SandboxConfig(network=True), "sid", None, {})


def test_sandbox_available_probe() -> None:
    ok, reason = sandbox_available()
    assert isinstance(ok, bool) and reason
    if shutil.which("bwrap"):
        assert ok, reason
    missing = sandbox_available(NO_BWRAP)
    assert missing[0] is False and "not found" in missing[1]


# -- persistent contexts -------------------------------------------------------------------------------


@needs_sandbox
def test_python_state_persists(session_factory: Callable[..., ExecutionDriver]) -> None:
    py = session_factory("python")
    assert py.sandboxed is True
    run_ok(py, "x = 41\nimport math")
    assert run_ok(py, "x + 1") == "42\n"
    assert run_ok(py, "print(math.sqrt(16))") == "4.0\n"
    failed = py.exec("1 / 0")
    assert failed.exit_code == 1 and "ZeroDivisionError" in failed.output
    assert run_ok(py, "def f(): return x * 2\nf()") == "82\n"
    result = py.exec("import sys; print('out'); print('err', file=sys.stderr)")
    assert isinstance(result, ExecResult) and result.stdout == "out\nerr\n" and not result.truncated


@needs_sandbox
def test_shell_cwd_and_env_persist(session_factory: Callable[..., ExecutionDriver]) -> None:
    sh = session_factory("shell")
    run_ok(sh, "mkdir -p sub && cd sub\nexport GREETING='hello world'\ncount=3")
    assert run_ok(sh, "pwd; echo \"$GREETING $count\"; bash -c 'echo child:$GREETING'") == (
        "/workspace/sub\nhello world 3\nchild:hello world\n"
    )
    assert sh.exec("false").exit_code == 1
    assert run_ok(sh, r"printf '%s|' 'a\nb' \\ ") == "a\\nb|\\|"  # backslashes survive framing
    assert sh.exec("cat").output == ""  # stdin is /dev/null, the protocol stream is private


@needs_node
@needs_sandbox
def test_node_state_persists(session_factory: Callable[..., ExecutionDriver]) -> None:
    node = session_factory("node")
    run_ok(node, "let a = 5; var b = 2; const os = require('os'); function twice(v) { return 2 * v; }")
    assert run_ok(node, "twice(a * b)") == "20\n"
    assert run_ok(node, "typeof os.platform()") == "'string'\n"
    assert run_ok(node, "new Promise((r) => setTimeout(() => r(a + 1), 50))") == "6\n"
    failed = node.exec("null.x")
    assert failed.exit_code == 1 and "TypeError" in failed.output


# -- timeouts and output cap -------------------------------------------------------------------------------


@needs_sandbox
def test_python_timeout_keeps_context(session_factory: Callable[..., ExecutionDriver]) -> None:
    py = session_factory("python")
    run_ok(py, "before = 'kept'")
    result = py.exec("while True: pass", timeout=1)
    assert result.timed_out and not result.context_lost and result.exit_code == 130
    assert "KeyboardInterrupt" in result.output
    assert py.is_alive() and run_ok(py, "before") == "'kept'\n"


@needs_node
@needs_sandbox
def test_node_timeout_keeps_context(session_factory: Callable[..., ExecutionDriver]) -> None:
    node = session_factory("node")
    run_ok(node, "var before = 'kept'")
    result = node.exec("while (true) {}", timeout=1)
    assert result.timed_out and not result.context_lost and result.exit_code == 130
    assert run_ok(node, "before") == "'kept'\n"


@needs_sandbox
def test_shell_timeout_interrupts_foreground_job(session_factory: Callable[..., ExecutionDriver]) -> None:
    sh = session_factory("shell")
    run_ok(sh, "export KEEP=yes; cd /tmp")
    result = sh.exec("sleep 100", timeout=1)
    assert result.timed_out and not result.context_lost
    assert run_ok(sh, "echo $KEEP $PWD") == "yes /tmp\n"


@needs_sandbox
def test_shell_builtin_loop_timeout_kills_session(session_factory: Callable[..., ExecutionDriver]) -> None:
    sh = session_factory("shell")
    run_ok(sh, "export KEEP=yes")
    result = sh.exec("while true; do :; done", timeout=1)
    assert result.timed_out and result.context_lost and result.exit_code is None
    assert not sh.is_alive()
    with pytest.raises(SessionDead):
        sh.exec("echo hi")
    sh.restart()
    assert run_ok(sh, "echo ${KEEP:-fresh}") == "fresh\n"


@needs_sandbox
def test_output_cap_truncates(session_factory: Callable[..., ExecutionDriver]) -> None:
    py = session_factory("python", output_limit=1000)
    result = py.exec("print('x' * 200_000)\nprint('done')")
    assert result.truncated and result.exit_code == 0 and result.output == "x" * 1000
    assert run_ok(py, "print('small')") == "small\n"  # the stream is back in sync
    sh = session_factory("shell", output_limit=1000)
    result = sh.exec("yes | head -c 5000000; echo; echo end")
    assert result.truncated and len(result.output) == 1000 and result.exit_code == 0


# -- containment probes -------------------------------------------------------------------------------


@needs_sandbox
def test_probe_network_is_unreachable(session_factory: Callable[..., ExecutionDriver]) -> None:
    py = session_factory("python")
    code = textwrap.dedent("""
        import socket
        for host, port in [("127.0.0.1", 5432), ("1.1.1.1", 53), ("1.1.1.1", 443)]:
            try:
                socket.create_connection((host, port), timeout=2).close()
                print(host, port, "CONNECTED")
            except OSError as exc:
                print(host, port, "blocked", type(exc).__name__)
        print(sorted(line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:]))
    """)
    output = run_ok(py, code, timeout=20)
    assert "CONNECTED" not in output and output.count("blocked") == 3
    assert "['lo']" in output  # only an (isolated) loopback interface exists


@needs_sandbox
def test_probe_host_files_and_environment_are_hidden(session_factory: Callable[..., ExecutionDriver]) -> None:
    assert (REPO_ROOT / "pyproject.toml").exists() and os.environ["SWITCHBOARD_TEST_SECRET"] == SECRET
    py = session_factory("python")
    code = textwrap.dedent(f"""
        import os
        for path in [{str(REPO_ROOT / "pyproject.toml")!r}, "/root", "/etc/shadow", "/etc/passwd",
                     "/home", "/work", "/sys", "/run"]:
            try:
                os.listdir(path) if os.path.isdir(path) else open(path, "rb").read()
                print(path, "READABLE")
            except OSError as exc:
                print(path, "denied", type(exc).__name__)
        print("secret visible" if any({SECRET!r} in v for v in os.environ.values()) else "secret hidden")
        # pid 1 is the sandbox's own bwrap init, not the host's init or the server.
        init_env = open("/proc/1/environ", "rb").read()
        print("init leaks" if {SECRET!r}.encode() in init_env else "init clean")
        print("pids", len([p for p in os.listdir("/proc") if p.isdigit()]))
    """)
    output = run_ok(py, code)
    assert "READABLE" not in output and output.count("denied") == 8, output
    assert "secret hidden" in output and "init clean" in output
    assert int(output.split("pids ")[1]) <= 3  # only the sandbox's own processes are visible
    env_dump = run_ok(session_factory("shell"), "env; cat /proc/self/environ")
    assert SECRET not in env_dump and "SWITCHBOARD_TEST_SECRET" not in env_dump


@needs_sandbox
def test_probe_writes_outside_workdir_fail(session_factory: Callable[..., ExecutionDriver]) -> None:
    sh = session_factory("shell")
    marker = f"sb-probe-{uuid.uuid4().hex}"
    output = sh.exec(
        f"for p in /usr/{marker} /etc/{marker} /{marker} /bin/{marker} /dev/{marker} /proc/{marker}; do "
        f"  (echo x > $p) 2>/dev/null && echo WROTE $p || echo denied $p; done; "
        f"echo x > /tmp/{marker} && echo x > /dev/shm/{marker} && echo x > {marker} && echo private-ok"
    ).output
    assert "WROTE" not in output and output.count("denied") == 6 and "private-ok" in output
    assert not Path("/tmp", marker).exists()  # the sandbox /tmp is a private tmpfs
    assert (sh.workdir / marker).exists()  # only the workdir reaches the host


@needs_sandbox
def test_probe_fork_bomb_is_contained(session_factory: Callable[..., ExecutionDriver]) -> None:
    limit = PROBE_CONFIG.max_processes
    sh = session_factory("shell")
    sh.exec(":(){ :|:& };:", timeout=3)
    peak = 0
    for _ in range(20):
        peak = max(peak, len(session_pids(sh.session_id)))
        time.sleep(0.05)
    assert 0 < peak <= limit
    assert subprocess.run(["true"]).returncode == 0  # the host can still fork
    sh.stop()
    assert session_pids(sh.session_id) == []

    py = session_factory("python")  # forked children exit instead of acting as a second REPL
    result = py.exec("import os\nwhile True: os.fork()", timeout=10)
    assert "BlockingIOError" in result.output
    assert py.is_alive() and "alive" in py.exec("print('alive')", timeout=10).output


@needs_sandbox
def test_probe_memory_hog_fails(session_factory: Callable[..., ExecutionDriver]) -> None:
    py = session_factory("python")
    result = py.exec("hog = bytearray(2 * 1024 ** 3)")
    assert result.exit_code == 1 and "MemoryError" in result.output
    # Shared anonymous memory is not covered by RLIMIT_DATA; RLIMIT_AS still stops it.
    result = py.exec("import mmap\nshared = mmap.mmap(-1, 2 * 1024 ** 3)\nshared[:] = b'x' * len(shared)")
    assert result.exit_code == 1 and ("MemoryError" in result.output or "Errno 12" in result.output)
    assert run_ok(py, "print('alive')") == "alive\n"


@needs_sandbox
def test_probe_huge_file_is_stopped(session_factory: Callable[..., ExecutionDriver]) -> None:
    limit = PROBE_CONFIG.max_file_mb * 1024 * 1024
    py = session_factory("python")
    result = py.exec(
        "with open('big.bin', 'wb') as f:\n    for _ in range(1024): f.write(bytes(1024 * 1024))"
    )
    assert result.exit_code == 1 and "File too large" in result.output
    assert (py.workdir / "big.bin").stat().st_size <= limit
    sh = session_factory("shell")
    result = sh.exec("head -c 1G /dev/zero > big.bin; echo status=$?")
    assert "status=0" not in result.output and (sh.workdir / "big.bin").stat().st_size <= limit
    assert run_ok(sh, "echo alive") == "alive\n"


@needs_sandbox
def test_probe_background_processes_die_with_stop(session_factory: Callable[..., ExecutionDriver]) -> None:
    sh = session_factory("shell")
    run_ok(sh, "sleep 1000 & setsid sleep 1001 & nohup sleep 1002 >/dev/null 2>&1 &")
    # Background jobs may still be starting when the command returns: wait until all are there.
    def all_started():
        found = session_pids(sh.session_id)
        return found if len(found) >= 5 else None

    pids = wait_until(all_started, what="bwrap, its init, bash and the three sleeps")
    assert len(pids) >= 5
    sh.stop()
    assert procutil.wait_gone(pids, 5) == []
    assert session_pids(sh.session_id) == []
    assert not sh.is_alive()


_SERVER_SCRIPT = """
import sys, time
from tools_app.execution import get_driver, SandboxConfig
cfg = SandboxConfig(bwrap_path=sys.argv[3]) if sys.argv[3] != "-" else SandboxConfig()
d = get_driver("shell")(sys.argv[1], session_id=sys.argv[2], config=cfg, allow_unsafe=True)
d.start()
d.exec("sleep 1000 & setsid sleep 1001 &")
print("ready", flush=True)
time.sleep(1000)
"""


def _crash_server(work_root: Path, bwrap: str) -> tuple[str, list[int]]:
    """Start a session from a throw-away "server" process, then SIGKILL that server."""
    sid = "crash-" + uuid.uuid4().hex[:8]
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER_SCRIPT, str(work_root / sid), sid, bwrap],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    pids = session_pids(sid)
    assert len(pids) >= 3
    os.kill(server.pid, signal.SIGKILL)
    server.wait()
    return sid, pids


@needs_sandbox
def test_sandbox_dies_with_the_server(work_root: Path) -> None:
    _sid, pids = _crash_server(work_root, "-")
    assert procutil.wait_gone(pids, 5) == []


def test_orphans_of_unsafe_sessions_are_found_and_killed(work_root: Path) -> None:
    sid, pids = _crash_server(work_root, "/nonexistent/bwrap")
    # Without bwrap the REPL exits on EOF, but the background jobs outlive the crashed server.
    time.sleep(0.3)
    survivors = [pid for pid in pids if procutil.wait_gone([pid], 0) == [pid]]
    assert len(survivors) >= 2
    # Treat every other live session (e.g. a concurrent test run) as known.
    others = {procutil.session_of(p) for p in procutil.iter_pids()} - {None, sid}
    assert set(survivors) <= set(procutil.find_orphans(others))
    killed = kill_orphans(others)
    assert set(survivors) <= set(killed)
    assert procutil.wait_gone(pids, 5) == [] and session_pids(sid) == []


# -- unsafe fallback -------------------------------------------------------------------------------


def test_sandbox_unavailable_is_raised(work_root: Path) -> None:
    driver = get_driver("python")(work_root / "no-bwrap", config=NO_BWRAP)
    with pytest.raises(SandboxUnavailable, match="EXEC_SESSIONS_ALLOW_UNSAFE"):
        driver.start()
    assert not driver.is_alive()


def test_unsafe_fallback_keeps_limits_and_clean_env(session_factory: Callable[..., ExecutionDriver]) -> None:
    py = session_factory("python", config=NO_BWRAP, allow_unsafe=True)
    assert py.sandboxed is False
    run_ok(py, "import os, resource\nx = 1")
    assert run_ok(py, "x + 1") == "2\n"
    env = run_ok(py, "print(sorted(os.environ))")
    assert "SWITCHBOARD_TEST_SECRET" not in env and MARKER_ENV in env
    limits = run_ok(
        py,
        "print(resource.getrlimit(resource.RLIMIT_NPROC)[0], resource.getrlimit(resource.RLIMIT_FSIZE)[0])",
    )
    assert limits == f"{NO_BWRAP.max_processes} {NO_BWRAP.max_file_mb * 1024 * 1024}\n"
    if os.geteuid() == 0:  # root drops to an unprivileged uid so RLIMIT_NPROC is enforced
        assert run_ok(py, "os.getuid()") != "0\n"
    timed = py.exec("while True: pass", timeout=1)
    assert timed.timed_out and not timed.context_lost and run_ok(py, "x") == "1\n"
    sh = session_factory("shell", config=NO_BWRAP, allow_unsafe=True)
    run_ok(sh, "setsid sleep 1000 &")
    pids = session_pids(sh.session_id)
    sh.stop()
    assert procutil.wait_gone(pids, 5) == [] and session_pids(sh.session_id) == []
