"""Browser tests: a live Switchboard (Daphne + a django-q2 cluster, as real subprocesses on the test
database, started by the end-to-end tests' ``Stack``), the test LLM server, and Debian's Chromium driven
by Playwright.

The stack starts once for these tests on pytest-django's test database (SQLite: a file; PostgreSQL: the
``test_`` database), so rows a test commits (``transactional_db``) are what the servers see. The cluster
has a queue of its own: work reaches it through the servers (the browser, HTTP), never from this process.
Each test gets a fresh browser context; a failing test leaves a screenshot in ``test-results/`` and the
servers' logs in its report.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import global_settings, settings
from django.core.management.base import CommandError
from django.test import Client, TransactionTestCase, override_settings

from core.models import Membership, Organization, Role
from core.tenancy import tenant_context
from sessions_app.models import RUN_ACTIVE_STATUSES, Agent, Run, RunStatus
from sessions_app.services.catalog import provider_credential_save
from sessions_app.services.runs import run_cancel
from tests.conftest import make_user
from tests.e2e.conftest import running_stack
from tests.support.llm_server import LLMServer
from tests.support.runtime import wait_until

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "test-results"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="package")
def live_stack(django_db_setup, django_db_blocker):
    """Daphne and a queue cluster on the test database, for the browser tests (the end-to-end tests'
    ``Stack``), with execution sessions on for the admin console."""
    exec_root = Path(tempfile.mkdtemp(prefix="sb-web-exec-", dir="/tmp"))
    exec_root.chmod(0o711)  # a sandbox's uid must traverse it to reach its workdir (see the exec tests)
    try:
        # The admin console needs execution sessions; the agents here list no execution tools.
        with running_stack(
            django_db_blocker,
            "web",
            ENABLE_EXEC_SESSIONS="true",
            EXEC_ROOT=str(exec_root / "exec"),
            ACTIVITY_DIR=str(exec_root / "activity"),
        ) as servers:
            yield servers
    finally:
        shutil.rmtree(exec_root, ignore_errors=True)


@pytest.fixture(scope="package")
def llm_server():
    with LLMServer() as server:
        yield server


@pytest.fixture
def llm(llm_server):
    """The test LLM server with no scripted replies left over from another test."""
    llm_server.reset()
    yield llm_server
    llm_server.reset()


@pytest.fixture(scope="package")
def browser():
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=20_000)  # a stack on a 2-core machine under a full test run can be slow
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    # Playwright's sync API keeps an event loop on this thread; Django's ORM would then refuse to run
    # here. The tests call the ORM only between browser steps, never from inside the loop.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)
    marks = getattr(item, "stack_log_marks", None)
    servers = getattr(item, "stack_servers", None)
    if report.failed and marks is not None and servers is not None:
        for process in servers.processes:
            report.sections.append((f"{process.name} log", process.log_since(marks.get(process.name, 0))))


def _new_context(browser, live_stack):
    context = browser.new_context(base_url=live_stack.base_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    return context


def _session_cookie(user, live_stack) -> dict:
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    return {"name": settings.SESSION_COOKIE_NAME, "value": cookie.value, "url": live_stack.base_url}


def _screenshots_if_failed(request, contexts) -> None:
    failed = any(
        getattr(getattr(request.node, f"report_{when}", None), "failed", False) for when in ("setup", "call")
    )
    if not failed:
        return
    RESULTS.mkdir(exist_ok=True)
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in request.node.nodeid)
    pages = [page for context in contexts for page in context.pages]
    for i, page in enumerate(pages):
        page.screenshot(path=str(RESULTS / f"{name}-{i}.png"), full_page=True)


@pytest.fixture
def context(browser, live_stack, request):
    """The test's browser context; on failure, every page of the test is photographed."""
    request.node.stack_servers = live_stack
    request.node.stack_log_marks = live_stack.log_marks()
    contexts = [_new_context(browser, live_stack)]
    request.node.extra_contexts = contexts
    yield contexts[0]
    _screenshots_if_failed(request, contexts)
    for context in contexts:
        context.close()


@pytest.fixture
def page_as(browser, live_stack, context, request):
    """Another person's browser: ``page_as(user)`` is a page in a context of its own, signed in."""

    def open_page(user):
        other = _new_context(browser, live_stack)
        other.add_cookies([_session_cookie(user, live_stack)])
        request.node.extra_contexts.append(other)
        return other.new_page()

    return open_page


@pytest.fixture
def page(context):
    """A page that records uncaught script errors in ``page.js_errors``."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.js_errors = errors
    return page


# --- data ---------------------------------------------------------------------------------------------


@dataclass
class WebTenant:
    org: Organization
    owner: object
    member: object
    viewer: object
    agent: Agent
    manual_agent: Agent

    @property
    def slug(self) -> str:
        return self.org.slug

    def path(self, rest: str = "") -> str:
        return f"/o/{self.org.slug}/{rest}"


@pytest.fixture
def tenant(transactional_db, live_stack, llm, settings):
    """An organization whose default provider is the test LLM server, with an agent that runs its tools
    at once and one that asks a person first. Its users sign in with :func:`sign_in` (a session cookie), so
    their passwords get a fast hash the servers cannot check; :func:`with_real_password` gives one a real one.
    """
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    org = Organization.objects.create(name="Acme Labs", slug="acme")
    with tenant_context(org):
        users = {}
        for role in (Role.OWNER, Role.MEMBER, Role.VIEWER):
            user = make_user(f"acme-{role}")
            Membership.objects.create(organization=org, user=user, role=role)
            users[str(role)] = user
        agent = Agent.objects.create(
            organization=org, name="Helper", slug="helper", model="test-model", tools=["calculator"]
        )
        manual = Agent.objects.create(
            organization=org,
            name="Careful helper",
            slug="careful",
            model="test-model",
            tools=["calculator"],
            approval_mode="manual",
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
            timeout_seconds=10.0,
        )
    yield WebTenant(org=org, agent=agent, manual_agent=manual, **users)
    _settle_runs(org)


def _settle_runs(org, timeout: float = 20.0) -> None:
    """Cancel what the servers still run for this test and wait until no worker writes, so that emptying
    the database after the test (TRUNCATE on PostgreSQL) does not deadlock with a streaming run."""
    with tenant_context(org):
        for run in Run.objects.filter(status__in=RUN_ACTIVE_STATUSES):
            run_cancel(run)
        deadline = time.monotonic() + timeout
        while Run.objects.filter(status=RunStatus.RUNNING).exists() and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.fixture(scope="package", autouse=True)
def flush_retried_on_deadlock():
    """Emptying the database after a test (TRUNCATE on PostgreSQL) can still meet a queue worker finishing
    the test's last task: a run cancelled while queued is not running, yet its worker may be about to
    take its lock to claim it. PostgreSQL then aborts one of the two; when that is the TRUNCATE, the
    flush is tried again once the servers' connections are idle (the worker's claim finds the run
    cancelled and lets go)."""
    original = TransactionTestCase._fixture_teardown

    def teardown(self) -> None:
        for attempt in range(5):
            try:
                return original(self)
            except CommandError as error:
                if attempt == 4 or "deadlock detected" not in str(error.__cause__):
                    raise
                wait_until(_other_connections_idle, what="the servers' transactions to end")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TransactionTestCase, "_fixture_teardown", teardown)
        yield


def _other_connections_idle() -> bool:
    """No other connection to the test database is running a statement or holding a transaction open."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND state <> 'idle'"
        )
        return cursor.fetchone()[0] == 0


def with_real_password(user, password: str) -> None:
    """A password the servers can check (they use Django's default hashers)."""
    with override_settings(PASSWORD_HASHERS=global_settings.PASSWORD_HASHERS):
        user.set_password(password)
        user.save(update_fields=["password"])


@pytest.fixture
def sign_in(context, live_stack):
    """Give the browser a signed-in session for a user (the sign-in form itself has its own test)."""

    def sign_in_as(user) -> None:
        context.add_cookies([_session_cookie(user, live_stack)])

    return sign_in_as
