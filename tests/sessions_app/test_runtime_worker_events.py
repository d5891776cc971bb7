"""Worker lifecycle events: every worker that takes a run reports how its part ended, exactly once."""

from __future__ import annotations

import pytest

from core.tenancy import tenant_context
from sessions_app.models import Run, RunStatus
from sessions_app.runtime import executor
from sessions_app.services.runs import run_cancel
from tests.support.runtime import (
    BackgroundWorker,
    events,
    post,
    post_and_run,
    task_queue_fixture,  # noqa: F401
    wait_until,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("task_queue")]


def worker_events(tenant, run) -> list[tuple[str, dict]]:
    return [(e.type, e.data) for e in events(tenant, run=run) if e.type.startswith("worker.")]


def test_a_completed_run_reports_its_worker_completed(world, llm, use_llm):
    use_llm(world.a)
    llm.script.reply("Done.")
    _, run = post_and_run(world.a)
    assert run.status == RunStatus.COMPLETED
    worker = run.worker
    assert worker_events(world.a, run) == [
        ("worker.spawned", {"worker": worker, "attempt": 1}),
        ("worker.completed", {"worker": worker}),
    ]


def test_a_provider_error_ends_the_workers_part_normally(world, llm, use_llm):
    use_llm(world.a, max_retries=0)
    llm.script.error(500)
    _, run = post_and_run(world.a)
    assert run.status == RunStatus.FAILED and run.error_code == "LLM_ERROR"
    assert [t for t, _ in worker_events(world.a, run)] == ["worker.spawned", "worker.completed"]
    # The worker's end comes after the run's failure, in the same step.
    types = [e.type for e in events(world.a, run=run)]
    assert types.index("worker.completed") > types.index("run.failed")


def test_a_cancelled_run_reports_its_worker_completed(world, llm, use_llm):
    use_llm(world.a)
    llm.script.reply(" ".join(f"word{i}" for i in range(300)), delay=0.05)
    _, run = post(world.a)
    worker = BackgroundWorker(world.a, run)
    worker.start()
    wait_until(lambda: events(world.a, types=("stream.chunk",), run=run), what="the first chunk")
    with tenant_context(world.a.org):
        run_cancel(Run.objects.get(pk=run.pk))
    worker.finish(timeout=10)
    with tenant_context(world.a.org):
        assert Run.objects.get(pk=run.pk).status == RunStatus.CANCELLED
    assert [t for t, _ in worker_events(world.a, run)] == ["worker.spawned", "worker.completed"]


def test_an_unexpected_error_reports_the_worker_failed_once(world, llm, use_llm, monkeypatch):
    use_llm(world.a)

    def broken(self):
        raise RuntimeError("a bug in the executor")

    monkeypatch.setattr(executor.RunExecutor, "execute", broken)
    _, run = post_and_run(world.a)
    assert run.status == RunStatus.FAILED and run.error_code == "INTERNAL_ERROR"
    assert worker_events(world.a, run) == [
        ("worker.spawned", {"worker": run.worker, "attempt": 1}),
        ("worker.failed", {"worker": run.worker, "attempt": 1}),
    ]
