"""Sandbox containment probes run through the REST API, the way an organization admin (or an agent's
python/shell tool) would: each one must be contained, leave the host healthy, and leave nothing behind."""

from __future__ import annotations

import subprocess
import textwrap
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from tests.tools_app.exec_support import SECRET, api_exec, api_start, exec_env, wait_until  # noqa: F401
from tools_app.execution import procutil, session_pids
from tools_app.execution.host import control_dir_for

pytestmark = pytest.mark.usefixtures("exec_env")
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def admin(world, client_for):
    return client_for(world.a.admin)


def _workspace(exec_session: dict) -> Path:
    return Path(django_settings.EXEC_ROOT) / exec_session["id"] / "workspace"


def test_probe_network_is_unreachable(world, admin):
    py = api_start(admin, world.a, mode="python")
    code = textwrap.dedent("""
        import socket
        for host, port in [("127.0.0.1", 5432), ("127.0.0.1", 6379), ("1.1.1.1", 53), ("8.8.8.8", 443)]:
            try:
                socket.create_connection((host, port), timeout=2).close()
                print(host, port, "CONNECTED")
            except OSError as exc:
                print(host, port, "blocked", type(exc).__name__)
        try:
            socket.getaddrinfo("example.com", 443)
            print("DNS RESOLVED")
        except OSError:
            print("dns blocked")
    """)
    output = api_exec(admin, world.a, py, code, timeout=20)["output"]
    assert "CONNECTED" not in output and "RESOLVED" not in output
    assert output.count("blocked") == 5, output


def test_probe_host_files_and_server_environment_are_hidden(world, admin):
    sh = api_start(admin, world.a, mode="shell")
    py = api_start(admin, world.a, mode="python")
    hidden = [
        str(REPO_ROOT / "pyproject.toml"),
        str(REPO_ROOT / "config" / "settings.py"),
        str(Path(django_settings.DATABASES["default"]["NAME"])),
        str(control_dir_for(_workspace(py))),  # its own host's control socket
        str(django_settings.ACTIVITY_DIR),
        "/etc/shadow",
        "/root",
        "/home",
        "/work",
    ]
    code = textwrap.dedent(f"""
        import os
        for path in {hidden!r}:
            try:
                os.listdir(path) if os.path.isdir(path) else open(path, "rb").read()
                print(path, "READABLE")
            except OSError as exc:
                print(path, "denied", type(exc).__name__)
        print("secret visible" if any({SECRET!r} in v for v in os.environ.values()) else "secret hidden")
        print("init leaks" if {SECRET!r}.encode() in open("/proc/1/environ", "rb").read() else "init clean")
        print("pids", len([p for p in os.listdir("/proc") if p.isdigit()]))
    """)
    output = api_exec(admin, world.a, py, code)["output"]
    assert "READABLE" not in output and output.count("denied") == len(hidden), output
    assert "secret hidden" in output and "init clean" in output
    assert int(output.split("pids ")[1]) <= 3  # the server and the host are not even visible
    env_dump = api_exec(admin, world.a, sh, "env; cat /proc/self/environ; ls /proc")["output"]
    assert SECRET not in env_dump and "SWITCHBOARD_TEST_SECRET" not in env_dump
    assert "DATABASE_URL" not in env_dump and "SECRET_KEY" not in env_dump
    # Nor does the exec host itself (outside the sandbox) inherit the server's environment.
    for exec_session in (sh, py):
        assert SECRET.encode() not in Path(f"/proc/{exec_session['pid']}/environ").read_bytes()

    marker = f"sb-probe-{uuid.uuid4().hex}"
    writes = api_exec(
        admin,
        world.a,
        sh,
        f"for p in /usr/{marker} /etc/{marker} /{marker} /dev/{marker}; do "
        f"(echo x > $p) 2>/dev/null && echo WROTE $p || echo denied $p; done; "
        f"echo x > /tmp/{marker} && echo x > {marker} && echo private-ok",
    )["output"]
    assert "WROTE" not in writes and writes.count("denied") == 4 and "private-ok" in writes
    assert not Path("/tmp", marker).exists() and (_workspace(sh) / marker).exists()


def test_probe_fork_bomb_is_contained(world, admin):
    limit = django_settings.EXEC_MAX_PROCESSES
    sh = api_start(admin, world.a, mode="shell")
    api_exec(admin, world.a, sh, ":(){ :|:& };:", timeout=3, ok=False)
    peak = 0

    def spread() -> bool:
        nonlocal peak
        peak = max(peak, len(session_pids(sh["id"])))
        return peak >= limit // 2

    wait_until(spread, what="the fork bomb to spread")
    # The host (not counted: it runs as the server's uid) stays; the sandbox uid never exceeds the limit.
    assert peak <= limit + 1 and len(session_pids(sh["id"])) <= limit + 1
    assert subprocess.run(["true"]).returncode == 0  # the machine can still fork
    pids = session_pids(sh["id"])
    stopped = admin.post(world.a.url(f"exec-sessions/{sh['id']}/stop/"))
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    assert procutil.wait_gone(pids, 5) == [] and session_pids(sh["id"]) == []

    py = api_start(admin, world.a, mode="python")
    result = api_exec(admin, world.a, py, "import os\nwhile True: os.fork()", timeout=10, ok=False)
    assert "BlockingIOError" in result["output"]
    # Late tracebacks of the forked children may still arrive with the next result, interleaved with it.
    assert "alive" in api_exec(admin, world.a, py, "print('alive')", timeout=10)["output"]


def test_probe_memory_hog_fails_and_the_session_lives(world, admin):
    py = api_start(admin, world.a, mode="python")
    hog = api_exec(admin, world.a, py, "hog = bytearray(2 * 1024 ** 3)", ok=False)
    assert hog["exit_code"] == 1 and "MemoryError" in hog["output"]
    shared = api_exec(
        admin,
        world.a,
        py,
        "import mmap\nshared = mmap.mmap(-1, 2 * 1024 ** 3)\nshared[:] = b'x' * len(shared)",
        ok=False,
    )
    assert shared["exit_code"] == 1 and ("MemoryError" in shared["output"] or "Errno 12" in shared["output"])
    assert api_exec(admin, world.a, py, "print('alive')")["output"] == "alive\n"


def test_probe_huge_file_is_stopped(world, admin):
    limit = django_settings.EXEC_MAX_FILE_MB * 1024 * 1024
    py = api_start(admin, world.a, mode="python")
    result = api_exec(
        admin,
        world.a,
        py,
        "with open('big.bin', 'wb') as f:\n    for _ in range(1024): f.write(bytes(1024 * 1024))",
        ok=False,
    )
    assert result["exit_code"] == 1 and "File too large" in result["output"]
    assert (_workspace(py) / "big.bin").stat().st_size <= limit
    sh = api_start(admin, world.a, mode="shell")
    out = api_exec(admin, world.a, sh, "head -c 1G /dev/zero > big.bin; echo status=$?", ok=False)["output"]
    assert "status=0" not in out and (_workspace(sh) / "big.bin").stat().st_size <= limit
    tmp = api_exec(admin, world.a, sh, "head -c 200M /dev/zero > /tmp/fill; echo status=$?", ok=False)
    assert "status=0" not in tmp["output"]  # the private /tmp is capped as well
    assert api_exec(admin, world.a, sh, "echo alive")["output"] == "alive\n"


def test_probe_background_processes_are_gone_after_stop(world, admin):
    sh = api_start(admin, world.a, mode="shell")
    api_exec(admin, world.a, sh, "sleep 1000 & setsid sleep 1001 & nohup sleep 1002 >/dev/null 2>&1 &")
    py = api_start(admin, world.a, mode="python")
    api_exec(
        admin,
        world.a,
        py,
        "import subprocess\np = subprocess.Popen(['sleep', '1003'], start_new_session=True)",
    )
    pids = session_pids(sh["id"]) + session_pids(py["id"])
    assert len(pids) >= 10  # per session: host, bwrap, its init, the interpreter, and the sleeps
    for exec_session in (sh, py):
        stopped = admin.post(world.a.url(f"exec-sessions/{exec_session['id']}/stop/"))
        assert stopped.status_code == 200
    assert procutil.wait_gone(pids, 5) == []
    assert session_pids(sh["id"]) == [] == session_pids(py["id"])
    wait_until(lambda: not _workspace(sh).exists(), what="the workspace to be removed")
