"""Playing the queue worker in-process for runtime tests.

``run_now`` executes a run on the test's thread, as a queue worker would; :class:`BackgroundWorker`
does it on another thread (cancel tests, stateless waits); the ``task_queue`` fixture replaces django-q2's
``async_task`` so that dispatched tasks are recorded (ids only) and, when asked, executed on worker
threads. Worker threads enter the tenant context and close their own database connection at the end.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from core.tenancy import tenant_context
from sessions_app.models import Message, Run, SessionEvent
from sessions_app.runtime.executor import run_execute
from sessions_app.services.messages import message_post_user


def post(tenant, content: str = "Hello there", *, session=None, **kwargs) -> tuple[Message, Run]:
    with tenant_context(tenant.org):
        return message_post_user(session or tenant.session, content, author=tenant.member, **kwargs)


def run_now(tenant, run: Run) -> Run:
    """Execute ``run`` to its next resting point on this thread; the run as stored afterwards."""
    with tenant_context(tenant.org):
        run_execute(str(run.pk))
        return Run.objects.get(pk=run.pk)


def post_and_run(tenant, content: str = "Hello there", *, session=None) -> tuple[Message, Run]:
    message, run = post(tenant, content, session=session)
    return message, run_now(tenant, run)


def reload(tenant, obj):
    with tenant_context(tenant.org):
        return type(obj).objects.get(pk=obj.pk)


def events(tenant, session=None, *, types: tuple[str, ...] | None = None, run=None) -> list[SessionEvent]:
    with tenant_context(tenant.org):
        qs = SessionEvent.objects.filter(session=session or tenant.session).order_by("seq")
        if types:
            qs = qs.filter(type__in=types)
        if run is not None:
            qs = qs.filter(run=run)
        return list(qs)


def event_types(tenant, session=None, *, run=None) -> list[str]:
    return [e.type for e in events(tenant, session, run=run)]


def wait_until(
    condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition", interval: float = 0.02
) -> Any:
    """Poll ``condition`` until it returns something truthy (returned); fail the test if it never does.
    The one polling helper of the test suite: the end-to-end and exec tests call it too."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


class _WorkerThread(threading.Thread):
    def __init__(self, target: Callable[[], Any], name: str) -> None:
        super().__init__(daemon=True, name=name)
        self._work = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._work()
        except BaseException as exc:  # reported by the test that joins the thread
            self.error = exc
        finally:
            connection.close()


class BackgroundWorker(_WorkerThread):
    """``run_execute`` for one run on its own thread, in the tenant's context."""

    def __init__(self, tenant, run: Run) -> None:
        def work() -> None:
            with tenant_context(tenant.org):
                run_execute(str(run.pk))

        super().__init__(work, name=f"test-worker-{run.pk}")

    def finish(self, timeout: float = 15.0) -> None:
        """Join; fail if the thread is still running or raised."""
        self.join(timeout=timeout)
        assert not self.is_alive(), "the worker did not stop"
        if self.error is not None:
            raise self.error


class FakeQueue:
    """Stands in for django-q2's ``async_task``: records tasks and, if ``execute``, runs them on threads."""

    def __init__(self) -> None:
        self.tasks: list[tuple[str, tuple]] = []
        self.execute = False
        self.threads: list[_WorkerThread] = []

    def async_task(self, func: str, *args: Any, **kwargs: Any) -> str:
        self.tasks.append((func, args))
        if self.execute:
            module, _, name = func.rpartition(".")
            target = getattr(importlib.import_module(module), name)
            thread = _WorkerThread(lambda: target(*args), name=f"fake-queue-{len(self.tasks)}")
            self.threads.append(thread)
            thread.start()
        return f"task-{len(self.tasks)}"

    def run_ids(self) -> list[str]:
        return [args[0] for func, args in self.tasks if func == "sessions_app.tasks.run_execute"]

    def drain(self, timeout: float = 15.0) -> None:
        for thread in list(self.threads):
            thread.join(timeout=timeout)
            assert not thread.is_alive(), f"{thread.name} did not finish"
            if thread.error is not None:
                raise thread.error


@pytest.fixture(name="task_queue")
def task_queue_fixture(monkeypatch):
    """Record dispatched tasks instead of sending them to a broker; ``.execute = True`` runs them."""
    import django_q.tasks

    fake = FakeQueue()
    monkeypatch.setattr(django_q.tasks, "async_task", fake.async_task)
    yield fake
    fake.drain()
