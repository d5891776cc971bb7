"""Fixtures and helpers shared by the execution-session tests."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.runtime import wait_until as support_wait_until
from tools_app.execution import procutil
from tools_app.models import ExecSession, ExecSessionStatus
from tools_app.services.exec_sessions import exec_session_stop

SECRET = "sb-test-secret-" + uuid.uuid4().hex


@pytest.fixture
def exec_env(db, settings, monkeypatch) -> Iterator[Path]:
    """Execution sessions on, small sandbox limits, and a private EXEC_ROOT and ACTIVITY_DIR.

    The root is made under /tmp and world-searchable: the per-session sandbox uid must traverse the
    directories above its workdir, and the control socket path must stay short.
    """
    root = Path(tempfile.mkdtemp(prefix="sb-exec-", dir="/tmp"))
    root.chmod(0o711)
    settings.ENABLE_EXEC_SESSIONS = True
    settings.EXEC_SESSIONS_ALLOW_UNSAFE = False
    settings.EXEC_ROOT = root / "exec"
    settings.ACTIVITY_DIR = root / "activity"
    settings.EXEC_MEMORY_MB = 256
    settings.EXEC_CPU_SECONDS = 60
    settings.EXEC_MAX_PROCESSES = 32
    settings.EXEC_MAX_FILE_MB = 16
    settings.EXEC_DEFAULT_TIMEOUT_SECONDS = 20
    # A secret in the server's environment must never reach a host or a sandbox.
    monkeypatch.setenv("SWITCHBOARD_TEST_SECRET", SECRET)
    yield root
    for row in ExecSession.all_tenants_unsafe.filter(status=ExecSessionStatus.RUNNING):
        try:
            exec_session_stop(row, reason="test")
        except Exception:  # noqa: BLE001 (a test may have moved it "elsewhere"): kill by marker below
            pass
    for row in ExecSession.all_tenants_unsafe.all():
        pids = procutil.session_pids(str(row.pk))
        procutil.kill_pids(pids)
        procutil.wait_gone(pids, 5)
    shutil.rmtree(root, ignore_errors=True)


def wait_until(predicate: Callable[[], object], timeout: float = 15.0, what: str = "a condition") -> None:
    """``tests.support.runtime.wait_until`` with the longer timeout exec processes need."""
    support_wait_until(predicate, timeout, what, 0.05)


def api_start(client, tenant, **body) -> dict:
    response = client.post(tenant.url("exec-sessions/"), body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def api_exec(
    client, tenant, exec_session: dict, code: str, timeout: float | None = None, ok: bool = True
) -> dict:
    body: dict = {"code": code}
    if timeout is not None:
        body["timeout"] = timeout
    response = client.post(tenant.url(f"exec-sessions/{exec_session['id']}/exec/"), body, format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    if ok:
        assert data["exit_code"] == 0 and not data["timed_out"], data
    return data
