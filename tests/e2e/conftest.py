"""End-to-end harness: the real processes of a deployment, on pytest-django's test database.

Daphne (HTTP and websockets) and a django-q2 cluster run as subprocesses, each in its own process group,
with the environment this test run was given (SQLite, in-memory channel layer and ORM broker by default;
PostgreSQL, channels-redis and the Redis broker when ``DATABASE_URL`` / ``REDIS_URL`` are set). They use
the test database (SQLite: its file; PostgreSQL: the ``test_`` database), so what a test commits
(``transactional_db``) is what they see. The test LLM server runs in this process; organizations point
their provider credential at it. The cluster gets a queue name of its own, so a queue left in Redis by an
earlier run cannot feed it, and a 3 s run lease, so a killed worker is noticed quickly.

Clients are the real thing too: ``websockets`` and ``httpx`` (SSE), each read on a thread of its own so a
test can post, cancel or disconnect while they listen. Every wait is for a condition, with a deadline that
is only reached when something is broken; a failing test shows the servers' logs from its own start.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import quote

import httpx
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from core.api_keys import api_key_issue
from core.models import ApiKeyScope, Membership, Organization, Role
from core.tenancy import tenant_context
from sessions_app.models import Agent
from sessions_app.services.catalog import provider_credential_save
from tests.support.llm_server import LLMServer
from tests.support.runtime import wait_until as support_wait_until

ROOT = Path(__file__).resolve().parents[2]
WAIT = 60.0  # the longest any awaited condition may take; reached only when something is broken
READY_TIMEOUT = 90.0
LOG_TAIL_LINES = 400


# --- processes -------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def shared_database_url() -> str:
    """The URL of the database this test process uses, for the server processes."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return "sqlite:///" + str(Path(db["NAME"]).resolve())
    credentials = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = f"{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}"
    return f"postgres://{credentials}@{host}/{db['NAME']}"


def children_of(pid: int) -> list[int]:
    """Every descendant process of ``pid``, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces; the parent pid follows the state.
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [child for child, ppid in parents.items() if ppid == parent]
        found += kids
        frontier += kids
    return found


@dataclass
class ServerProcess:
    name: str
    command: list[str]
    log_path: Path
    popen: subprocess.Popen | None = None

    def start(self, env: dict[str, str]) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child holds it; closed right after fork)
        try:
            self.popen = subprocess.Popen(
                self.command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            log.close()

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self) -> None:
        """SIGTERM to the process (it stops its own children), then SIGKILL to whatever is left of its
        process group."""
        if self.popen is None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)  # workers the cluster did not take down with it
        except ProcessLookupError:
            pass
        self.popen.wait(timeout=10)
        self.popen = None

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, offset: int) -> str:
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            lines = log.read().decode(errors="replace").splitlines()
        skipped = len(lines) - LOG_TAIL_LINES
        head = [f"... {skipped} earlier lines ..."] if skipped > 0 else []
        return "\n".join(head + lines[-LOG_TAIL_LINES:])


class Stack:
    """Daphne and a queue cluster against the test database."""

    def __init__(self, workdir: Path, env: dict[str, str], port: int) -> None:
        self.env = env
        self.port = port
        self.cluster_name = env["Q_CLUSTER_NAME"]
        self.base_url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}"
        python = sys.executable
        daphne = [python, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"]
        self.daphne = ServerProcess("daphne", daphne, workdir / "daphne.log")
        self.cluster = ServerProcess("qcluster", [python, "manage.py", "qcluster"], workdir / "qcluster.log")
        self.processes = [self.daphne, self.cluster]

    def check_alive(self) -> None:
        for process in self.processes:
            if not process.alive():
                raise RuntimeError(f"{process.name} is not running:\n{process.log_since(0)}")

    def start(self) -> None:
        self.daphne.start(self.env)
        self.start_cluster()
        self.wait_http_ready()

    def start_cluster(self) -> None:
        mark = self.cluster.log_size()
        self.cluster.start(self.env)
        self.wait_cluster_ready(mark)

    def restart_cluster(self) -> None:
        self.cluster.stop()
        self.start_cluster()

    def stop(self) -> None:
        for process in self.processes:
            process.stop()

    def wait_http_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if httpx.get(self.base_url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"Daphne did not answer /healthz:\n{self.daphne.log_since(0)}")

    def wait_cluster_ready(self, mark: int) -> None:
        """The cluster is up when a trivial task sent to its queue comes back done."""
        from django_q.conf import Conf
        from django_q.tasks import async_task, result

        deadline = time.monotonic() + READY_TIMEOUT
        while b"running." not in self.cluster.log_path.read_bytes()[mark:]:
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the queue cluster did not start:\n{self.cluster.log_since(mark)}")
            time.sleep(0.1)
        # Tasks are signed with the cluster's name as salt: sign this one as the cluster's own.
        with mock.patch.object(Conf, "PREFIX", self.cluster_name):
            task_id = async_task("math.floor", 2.5, cluster=self.cluster_name, save=True)
        if result(task_id, wait=int(READY_TIMEOUT * 1000)) != 2:
            raise RuntimeError(f"the queue cluster ran no task:\n{self.cluster.log_since(mark)}")

    def cluster_workers(self) -> list[int]:
        return children_of(self.cluster.pid)

    def log_marks(self) -> dict[str, int]:
        return {p.name: p.log_size() for p in self.processes}


@pytest.fixture(scope="package")
def llm_server():
    with LLMServer() as server:
        yield server


@contextmanager
def running_stack(django_db_blocker, name: str, **extra_env: str):
    """Daphne and a queue cluster on the test database, under a queue name of their own (``name``-...),
    in a temporary working folder; stopped and removed on exit. ``extra_env`` adds or overrides settings."""
    workdir = Path(tempfile.mkdtemp(prefix=f"sb-{name}-", dir="/tmp"))
    workdir.chmod(0o711)  # a sandbox's uid must traverse it to reach its workdir (see the exec tests)
    with django_db_blocker.unblock():
        database_url = shared_database_url()
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_ALLOW_ASYNC_UNSAFE", "REDIS_URL")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=database_url,
        SECRET_KEY=settings.SECRET_KEY,  # provider keys are encrypted with it
        Q_CLUSTER_NAME=f"{name}-{uuid.uuid4().hex[:12]}",
        Q_WORKERS="2",
        DATA_DIR=str(workdir / "data"),
        PROMETHEUS_MULTIPROC_DIR=str(workdir / "metrics"),
        PYTHONUNBUFFERED="1",
        **extra_env,
    )
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    if settings.ENCRYPTION_KEYS:
        env["ENCRYPTION_KEYS"] = ",".join(settings.ENCRYPTION_KEYS)
    servers = Stack(workdir, env, free_port())
    try:
        with django_db_blocker.unblock():
            servers.start()
        yield servers
    finally:
        servers.stop()
        shutil.rmtree(workdir, ignore_errors=True)


METRICS_TOKEN = "e2e-metrics-token"


@pytest.fixture(scope="package")
def stack(django_db_setup, django_db_blocker, llm_server):
    """The servers, once for the e2e tests (and stopped after them, not at the end of the whole run)."""
    fast = {"RUN_LEASE_SECONDS": "3", "SSE_HEARTBEAT_SECONDS": "1"}
    with running_stack(django_db_blocker, "e2e", METRICS_TOKEN=METRICS_TOKEN, **fast) as servers:
        yield servers


@pytest.fixture
def llm(llm_server):
    """The test LLM server with nothing scripted or recorded from another test."""
    llm_server.reset()
    yield llm_server
    llm_server.reset()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    marks = getattr(item, "stack_log_marks", None)
    servers = getattr(item, "stack_servers", None)
    if report.failed and marks is not None and servers is not None:
        for process in servers.processes:
            report.sections.append((f"{process.name} log", process.log_since(marks.get(process.name, 0))))


# --- clients -----------------------------------------------------------------------------------------------


def wait_until(condition: Callable[[], Any], what: str, timeout: float = WAIT, interval: float = 0.1):
    """``tests.support.runtime.wait_until`` with what is awaited first and the end-to-end timeout."""
    return support_wait_until(condition, timeout, what, interval)


class Listener(threading.Thread):
    """Frames received on a background thread; ``wait_for`` blocks until one matches."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.frames: list[dict] = []
        self.closed = False
        self.error: BaseException | None = None
        self._cond = threading.Condition()

    def _add(self, frame: dict) -> None:
        with self._cond:
            self.frames.append(frame)
            self._cond.notify_all()

    def _finish(self, error: BaseException | None = None) -> None:
        with self._cond:
            self.closed, self.error = True, error
            self._cond.notify_all()

    @property
    def events(self) -> list[dict]:
        with self._cond:
            return [f for f in self.frames if "seq" in f]

    def wait_for(self, predicate: Callable[[dict], bool], what: str, timeout: float = WAIT) -> dict:
        """The first frame (from the beginning) that matches."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for frame in self.frames:
                    if predicate(frame):
                        return frame
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise AssertionError(
                        f"{self.name}: no {what} (closed={self.closed}, error={self.error!r}, "
                        f"last frames={self.frames[-5:]})"
                    )
                self._cond.wait(left)

    def wait_type(self, type: str, timeout: float = WAIT) -> dict:
        return self.wait_for(lambda f: f.get("type") == type, type, timeout)

    def wait_seq(self, seq: int, timeout: float = WAIT) -> list[dict]:
        """Every event up to ``seq``, once it has arrived."""
        self.wait_for(lambda f: f.get("seq", 0) >= seq, f"event {seq}", timeout)
        return [e for e in self.events if e["seq"] <= seq]


class WebSocketListener(Listener):
    def __init__(self, url: str, headers: dict[str, str]) -> None:
        super().__init__(f"websocket {url}")
        connection = ws_connect(url, additional_headers=headers, open_timeout=30, max_size=None)
        self.connection = connection.__enter__()  # held open by this listener until close()
        self.start()

    def run(self) -> None:
        try:
            for text in self.connection:
                self._add(json.loads(text))
        except ConnectionClosed:
            pass
        except BaseException as error:  # reported by wait_for
            self._finish(error)
            return
        self._finish()

    def send(self, frame: dict) -> None:
        self.connection.send(json.dumps(frame))

    def close(self) -> None:
        self.connection.__exit__(None, None, None)
        self.join(timeout=30)


class SSEListener(Listener):
    """An EventSource-like reader: ``id``/``event``/``data`` blocks; heartbeats are counted."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        super().__init__(f"sse {url}")
        self.url, self.headers = url, headers
        self.heartbeats = 0
        self.status: int | None = None
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self.start()
        if not self._ready.wait(30) or self.status != 200:
            raise AssertionError(f"SSE stream not opened: status={self.status} error={self.error!r}")

    def run(self) -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(30.0)) as client:
                with client.stream("GET", self.url, headers=self.headers) as response:
                    self.status = response.status_code
                    self._ready.set()
                    block: dict[str, str] = {}
                    # The server sends a heartbeat every second when idle, so a stop is noticed quickly.
                    for line in response.iter_lines():
                        if self._stopping.is_set():
                            break
                        if line.startswith(":"):
                            self.heartbeats += 1
                        elif line:
                            name, _, value = line.partition(":")
                            block[name] = value[1:] if value.startswith(" ") else value
                        elif "data" in block:
                            envelope = json.loads(block["data"])
                            assert block["id"] == str(envelope["seq"]) and block["event"] == envelope["type"]
                            self._add(envelope)
                            block = {}
                        else:
                            block = {}
        except BaseException as error:  # reported by wait_for
            self._ready.set()
            self._finish(error)
            return
        self._finish()

    def close(self) -> None:
        self._stopping.set()
        self.join(timeout=30)


# --- a tenant of the live stack -------------------------------------------------------------------------


@dataclass
class LiveTenant:
    """An organization on the live stack, acting through the API with one key (read, write, approve)."""

    org: Organization
    user: Any
    agent: Agent
    key: str
    stack: Stack
    api: httpx.Client = field(repr=False)
    listeners: list[Listener] = field(default_factory=list, repr=False)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def path(self, rest: str) -> str:
        return f"/api/v1/orgs/{self.org.slug}/{rest}"

    def create_session(self, agent: str = "helper") -> str:
        response = self.api.post(self.path("sessions/"), json={"agent": agent, "name": "e2e"})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def post_message(self, session: str, content: str, *, wait: bool = False) -> httpx.Response:
        suffix = "?wait=true" if wait else ""
        return self.api.post(self.path(f"sessions/{session}/messages/{suffix}"), json={"content": content})

    def run(self, session: str, run: str) -> dict:
        response = self.api.get(self.path(f"sessions/{session}/runs/{run}/"))
        assert response.status_code == 200, response.text
        return response.json()

    def wait_run(self, session: str, run: str, statuses=("completed", "failed", "cancelled")) -> dict:
        return wait_until(
            lambda: (r := self.run(session, run))["status"] in statuses and r, f"run {run} in {statuses}"
        )

    def log(self, session: str) -> list[dict]:
        response = self.api.get(self.path(f"sessions/{session}/events/"), params={"after": 0, "limit": 1000})
        assert response.status_code == 200, response.text
        return response.json()["events"]

    def messages(self, session: str) -> list[dict]:
        response = self.api.get(self.path(f"sessions/{session}/messages/"))
        assert response.status_code == 200, response.text
        return response.json()["results"]

    def websocket(self, session: str, after: int | None = 0) -> WebSocketListener:
        query = f"?after={after}" if after is not None else ""
        url = f"{self.stack.ws_url}/ws/orgs/{self.org.slug}/sessions/{session}/{query}"
        listener = WebSocketListener(url, self.auth)
        self.listeners.append(listener)
        return listener

    def approvals(self) -> WebSocketListener:
        listener = WebSocketListener(f"{self.stack.ws_url}/ws/orgs/{self.org.slug}/approvals/", self.auth)
        self.listeners.append(listener)
        return listener

    def sse(self, session: str, *, after: int | None = 0, last_event_id: int | None = None) -> SSEListener:
        url = self.stack.base_url + self.path(f"sessions/{session}/stream")
        if after is not None:
            url += f"?after={after}"
        headers = dict(self.auth)
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        listener = SSEListener(url, headers)
        self.listeners.append(listener)
        return listener


@pytest.fixture
def tenant(transactional_db, stack, llm, request) -> LiveTenant:
    """A fresh organization whose default provider is the test LLM server; its user owns the API key."""
    request.node.stack_servers = stack
    request.node.stack_log_marks = stack.log_marks()
    org = Organization.objects.create(name="E2E Labs", slug=f"e2e-{uuid.uuid4().hex[:8]}")
    user = get_user_model().objects.create_user(username=f"{org.slug}-owner")  # no password: keys only
    with tenant_context(org):
        Membership.objects.create(organization=org, user=user, role=Role.OWNER)
        agent = Agent.objects.create(
            organization=org, name="Helper", slug="helper", system_prompt="Be brief.", model="test-model"
        )
        provider_credential_save(
            None,
            organization=org,
            name="test server",
            kind="compatible",
            base_url=llm.base_url,
            api_key="sk-test",
            is_default=True,
            max_retries=0,
            timeout_seconds=30.0,
        )
    key = api_key_issue(
        organization=org,
        name="e2e",
        scopes=[ApiKeyScope.READ, ApiKeyScope.WRITE, ApiKeyScope.APPROVE],
        created_by=user,
    ).secret
    with httpx.Client(base_url=stack.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as api:
        live = LiveTenant(org=org, user=user, agent=agent, key=key, stack=stack, api=api)
        try:
            yield live
        finally:
            for listener in live.listeners:
                listener.close()


def assert_in_order(events: list[dict], first: int = 1) -> None:
    """Seqs consecutive from ``first``: no gap, no duplicate."""
    assert [e["seq"] for e in events] == list(range(first, first + len(events)))


def reply_of(events: list[dict], message: str | None = None) -> str:
    """The text streamed in ``stream.chunk`` events (of one message, if given)."""
    return "".join(
        e["data"]["delta"]
        for e in events
        if e["type"] == "stream.chunk" and (message is None or e["data"]["message"] == message)
    )
