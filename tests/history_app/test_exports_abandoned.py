"""An export whose worker died (killed at Q_TASK_TIMEOUT, a deploy, OOM) does not stay "running" for
ever: django-q2 does not retry it (max_attempts 1) and a repeated task skips it, so the scheduled sweep
fails it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.tenancy import tenant_context
from history_app.models import Export, ExportStatus
from history_app.tasks import export_run, exports_expire
from tests.history_app.builders import add_message


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def test_an_export_whose_worker_died_does_not_stay_running_forever(world, settings):
    add_message(world.a, "budget")
    long_ago = timezone.now() - timedelta(days=30)
    with tenant_context(world.a.org):
        export = Export.objects.create(organization=world.a.org, created_by=world.a.member, total=1)
        # The worker claimed it, then died (the task was killed after Q_TASK_TIMEOUT seconds).
        Export.objects.filter(pk=export.pk).update(status=ExportStatus.RUNNING, started_at=long_ago)
    assert long_ago < timezone.now() - timedelta(seconds=settings.Q_CLUSTER["timeout"] * 10)
    export_run(str(export.pk))  # a repeated delivery of the task, had there been one
    exports_expire()  # the scheduled sweep, a month later
    with tenant_context(world.a.org):
        left = Export.objects.filter(pk=export.pk).values_list("status", flat=True).first()
    assert left != ExportStatus.RUNNING, "still 'running' a month after its worker died"


@pytest.fixture
def enqueued(monkeypatch):
    calls = []
    monkeypatch.setattr("core.queue.enqueue", lambda func, *args, **kwargs: calls.append((func, args)))
    return calls


def queued_export(tenant, created_ago: timedelta) -> Export:
    with tenant_context(tenant.org):
        export = Export.objects.create(organization=tenant.org, created_by=tenant.member, total=1)
        Export.objects.filter(pk=export.pk).update(created_at=timezone.now() - created_ago)
    return export


def status_of(tenant, export) -> str:
    with tenant_context(tenant.org):
        return Export.objects.get(pk=export.pk).status


def test_a_queued_export_whose_task_went_missing_is_enqueued_again_and_then_written(world, enqueued):
    add_message(world.a, "budget")
    lost = queued_export(world.a, timedelta(hours=2))  # its task was lost: the broker restarted
    waiting = queued_export(world.a, timedelta(seconds=5))  # just queued: its task is on its way
    exports_expire()
    assert enqueued == [("history_app.tasks.export_run", (str(lost.pk),))]
    assert status_of(world.a, lost) == status_of(world.a, waiting) == ExportStatus.QUEUED
    assert export_run(str(lost.pk)) == ExportStatus.COMPLETED  # the task enqueued again runs
    assert export_run(str(lost.pk)) == ExportStatus.COMPLETED  # and a duplicate of it does nothing more


def test_a_queued_export_no_worker_took_for_a_day_fails_with_a_clear_error(world, enqueued):
    stuck = queued_export(world.a, timedelta(hours=25))
    other = queued_export(world.b, timedelta(hours=2))
    exports_expire()
    with tenant_context(world.a.org):
        failed = Export.objects.get(pk=stuck.pk)
    assert failed.status == ExportStatus.FAILED and "never started" in failed.error and failed.finished_at
    assert enqueued == [("history_app.tasks.export_run", (str(other.pk),))]  # every organization is swept


def test_a_broker_that_refuses_the_task_does_not_fail_the_request(
    world, client_for, monkeypatch, django_capture_on_commit_callbacks
):
    def refuse(*args, **kwargs):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr("core.queue.enqueue", refuse)
    with django_capture_on_commit_callbacks(execute=True):
        r = client_for(world.a.member).post(world.a.url("exports/"), {"filters": {}}, format="json")
    assert r.status_code == 202, r.content
    with tenant_context(world.a.org):
        assert Export.objects.get(pk=r.json()["id"]).status == ExportStatus.QUEUED  # the sweep enqueues it
