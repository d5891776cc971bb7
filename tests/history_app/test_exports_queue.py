"""Many-session exports: an Export row, a queue task (run synchronously here), progress and download."""

from __future__ import annotations

import json

import django_q.tasks
import pytest

from core.tenancy import tenant_context
from history_app.models import Export
from history_app.tasks import export_run
from tests.history_app.builders import add_message, new_session
from tests.support.assertions import assert_error


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def queued(monkeypatch):
    calls = []
    monkeypatch.setattr(
        django_q.tasks, "async_task", lambda func, *args, **kwargs: calls.append((func, args))
    )
    return calls


@pytest.fixture
def sessions(world):
    finance = [new_session(world.a, f"Finance {i}", tags=["finance"]) for i in range(3)]
    for i, session in enumerate(finance):
        add_message(world.a, f"budget line {i}", session=session)
    add_message(world.a, "not exported: acme lunch plans")
    add_message(world.b, "globex confidential roadmap")
    return finance


def lines_of(response) -> list[dict]:
    body = b"".join(response.streaming_content).decode()
    return [json.loads(line) for line in body.splitlines()]


def test_export_with_filters_runs_on_the_queue(
    world, client_for, sessions, queued, django_capture_on_commit_callbacks
):
    c = client_for(world.a.member)
    with django_capture_on_commit_callbacks(execute=True):
        r = c.post(world.a.url("exports/"), {"filters": {"tag": ["finance"]}}, format="json")
    assert r.status_code == 202, r.content
    body = r.json()
    assert (body["status"], body["total"], body["progress"], body["download_url"]) == ("queued", 3, 0, None)
    assert body["filters"] == {"tag": ["finance"]}
    assert queued == [("history_app.tasks.export_run", (body["id"],))]  # ids only, after commit

    assert export_run(body["id"]) == "completed"
    done = c.get(world.a.url(f"exports/{body['id']}/")).json()
    assert (done["status"], done["progress"], done["total"]) == ("completed", 3, 3)
    assert done["size"] > 0 and done["download_url"].endswith(f"/exports/{body['id']}/download/")

    download = c.get(world.a.url(f"exports/{body['id']}/download/"))
    assert download.status_code == 200 and download["Content-Type"] == "application/x-ndjson"
    assert "attachment;" in download["Content-Disposition"]
    lines = lines_of(download)
    assert lines[0]["type"] == "header" and lines[0]["sessions"] == 3
    assert sorted(line["name"] for line in lines if line["type"] == "session") == [
        "Finance 0",
        "Finance 1",
        "Finance 2",
    ]
    text = json.dumps(lines)
    assert "budget line 2" in text and "lunch" not in text and "globex" not in text


def test_top_level_filters_and_no_filters(world, client_for, sessions, queued):
    c = client_for(world.a.member)
    r = c.post(world.a.url("exports/"), {"owner": "me", "q": "Finance 1"}, format="json")
    assert r.status_code == 202, r.content
    assert r.json()["total"] == 1
    everything = c.post(world.a.url("exports/"), {}, format="json").json()
    assert everything["total"] == 4  # the three plus world.a.session
    export_run(everything["id"])
    lines = lines_of(c.get(world.a.url(f"exports/{everything['id']}/download/")))
    assert sum(1 for line in lines if line["type"] == "session") == 4


def test_bad_filters_are_validation_errors(world, client_for, queued):
    c = client_for(world.a.member)
    assert_error(
        c.post(world.a.url("exports/"), {"filters": {"status": ["bogus"]}}, format="json"),
        400,
        "VALIDATION_ERROR",
    )
    error = assert_error(
        c.post(world.a.url("exports/"), {"filters": {"colour": "red"}}, format="json"),
        400,
        "VALIDATION_ERROR",
    )
    assert "colour" in error["details"]
    assert_error(
        c.post(world.a.url("exports/"), {"filters": ["tag"]}, format="json"), 400, "VALIDATION_ERROR"
    )
    assert not Export.all_tenants_unsafe.exists() and queued == []


def test_download_waits_for_completion(world, client_for, sessions, queued):
    c = client_for(world.a.member)
    export_id = c.post(world.a.url("exports/"), {}, format="json").json()["id"]
    error = assert_error(c.get(world.a.url(f"exports/{export_id}/download/")), 400, "INVALID_STATE")
    assert error["details"]["status"] == "queued"


def test_the_task_is_idempotent_and_ignores_unknown_ids(world, client_for, sessions, queued):
    export_id = client_for(world.a.member).post(world.a.url("exports/"), {}, format="json").json()["id"]
    assert export_run(export_id) == "completed"
    first = Export.all_tenants_unsafe.get(pk=export_id)
    assert export_run(export_id) == "completed"
    assert Export.all_tenants_unsafe.get(pk=export_id).file.name == first.file.name
    assert export_run("00000000-0000-0000-0000-000000000000") is None


def test_a_failing_export_is_marked_failed(world, client_for, sessions, queued, monkeypatch):
    import history_app.services.exports as exports

    def explode(session, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(exports, "session_records", explode)
    export_id = client_for(world.a.member).post(world.a.url("exports/"), {}, format="json").json()["id"]
    assert export_run(export_id) == "failed"
    body = client_for(world.a.member).get(world.a.url(f"exports/{export_id}/")).json()
    assert body["status"] == "failed" and body["error"] == "The export failed unexpectedly."
    assert "fire" not in body["error"]


def test_exports_are_confined_to_their_organization(world, client_for, sessions, queued):
    a_export = client_for(world.a.member).post(world.a.url("exports/"), {}, format="json").json()["id"]
    export_run(a_export)
    b = client_for(world.b.owner)
    b_export = b.post(world.b.url("exports/"), {}, format="json").json()["id"]
    export_run(b_export)
    assert_error(b.get(world.b.url(f"exports/{a_export}/")), 404, "NOT_FOUND")
    assert_error(b.get(world.b.url(f"exports/{a_export}/download/")), 404, "NOT_FOUND")
    assert_error(b.get(world.a.url(f"exports/{a_export}/")), 404, "ORGANIZATION_NOT_FOUND")
    assert [e["id"] for e in b.get(world.b.url("exports/")).json()["results"]] == [b_export]
    text = json.dumps(lines_of(b.get(world.b.url(f"exports/{b_export}/download/"))))
    assert "globex confidential roadmap" in text and "acme" not in text and "budget" not in text
    with tenant_context(world.b.org):
        assert Export.objects.get().organization_id == world.b.org.pk


def test_viewers_may_not_start_exports(world, client_for, queued):
    assert_error(
        client_for(world.a.viewer).post(world.a.url("exports/"), {}, format="json"), 403, "PERMISSION_DENIED"
    )


def test_finished_exports_are_deleted_with_their_files_after_the_retention(
    world, client_for, sessions, queued, settings
):
    from datetime import timedelta

    from django.core.files.storage import default_storage
    from django.utils import timezone

    from history_app.tasks import exports_expire

    settings.EXPORT_RETENTION_HOURS = 24
    a_old, a_recent, a_running = (
        client_for(world.a.member).post(world.a.url("exports/"), {}, format="json").json()["id"]
        for _ in range(3)
    )
    b_old = client_for(world.b.member).post(world.b.url("exports/"), {}, format="json").json()["id"]
    for export_id in (a_old, a_recent, b_old):
        assert export_run(export_id) == "completed"
    old_file = Export.all_tenants_unsafe.get(pk=a_old).file.name
    assert default_storage.exists(old_file)
    long_ago = timezone.now() - timedelta(hours=25)
    Export.all_tenants_unsafe.filter(pk__in=[a_old, b_old]).update(finished_at=long_ago)
    Export.all_tenants_unsafe.filter(pk=b_old).update(status="failed")
    Export.all_tenants_unsafe.filter(pk=a_running).update(status="running", started_at=long_ago)

    settings.EXPORT_RETENTION_HOURS = 0  # kept forever
    assert exports_expire() == 0
    settings.EXPORT_RETENTION_HOURS = 24
    assert exports_expire() == 2
    assert sorted(str(pk) for pk in Export.all_tenants_unsafe.values_list("pk", flat=True)) == sorted(
        [a_recent, a_running]
    )
    assert not default_storage.exists(old_file)
    assert default_storage.exists(Export.all_tenants_unsafe.get(pk=a_recent).file.name)
    assert_error(client_for(world.a.member).get(world.a.url(f"exports/{a_old}/")), 404, "NOT_FOUND")
