"""Every session has ``last_activity_at``: sessions are listed and cursor-paginated by it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from core.tenancy import tenant_context, unscoped_tenant_access
from sessions_app.models import Session


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def _export_without_last_activity(client, tenant, created_at: str) -> bytes:
    r = client.get(tenant.url(f"sessions/{tenant.session.pk}/export/"), {"format": "jsonl"})
    assert r.status_code == 200, r.content
    lines = [json.loads(line) for line in r.content.decode().splitlines() if line.strip()]
    sessions = [line for line in lines if "last_activity_at" in line]
    assert len(sessions) == 1, lines
    sessions[0].pop("last_activity_at")
    sessions[0]["created_at"] = created_at
    return "\n".join(json.dumps(line) for line in lines).encode() + b"\n"


def _import(client, tenant, data: bytes) -> str:
    r = client.post(
        tenant.url("imports/"), {"file": SimpleUploadedFile("export.jsonl", data)}, format="multipart"
    )
    assert r.status_code == 201, r.content
    (imported,) = r.json()["sessions"]
    return imported["id"]


def test_an_imported_session_without_last_activity_was_last_active_when_created(world, client_for):
    c = client_for(world.a.member)
    session_id = _import(c, world.a, _export_without_last_activity(c, world.a, "2025-03-04T05:06:07Z"))
    with unscoped_tenant_access():
        session = Session.objects.get(pk=session_id)
    expected = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert session.last_activity_at == session.created_at == expected


@pytest.mark.parametrize("ordering", ["last_activity_at", "-last_activity_at"])
def test_ordering_by_last_activity_walks_every_session_with_imports_among_them(world, client_for, ordering):
    c = client_for(world.a.member)
    for day in (1, 2):
        _import(c, world.a, _export_without_last_activity(c, world.a, f"2025-01-0{day}T00:00:00Z"))
    for i in range(2):
        assert c.post(world.a.url("sessions/"), {"agent": "helper", "name": f"s{i}"}).status_code == 201
    with tenant_context(world.a.org):
        expected = set(map(str, Session.objects.values_list("pk", flat=True)))
    assert len(expected) == 5
    r = c.get(world.a.url(f"sessions/?ordering={ordering}&page_size=1"))
    seen = []
    for _ in range(10):
        assert r.status_code == 200, r.content
        seen += [row["id"] for row in r.json()["results"]]
        if not r.json()["next"]:
            break
        r = c.get(r.json()["next"])
    assert sorted(seen) == sorted(expected)


def test_a_session_saved_without_last_activity_gets_the_time(world):
    before = timezone.now()
    with tenant_context(world.a.org):
        session = Session.objects.create(organization=world.a.org, agent=world.a.agent)  # as admin's add form
        assert before <= session.last_activity_at <= timezone.now()
        with pytest.raises(IntegrityError), transaction.atomic():
            Session.objects.filter(pk=session.pk).update(last_activity_at=None)


@pytest.mark.django_db(transaction=True)
def test_the_migration_fills_missing_last_activity_from_created_at(world):
    executor = MigrationExecutor(connection)
    executor.migrate([("sessions_app", "0006_system_presets")])
    try:
        old_apps = executor.loader.project_state(("sessions_app", "0006_system_presets")).apps
        OldSession = old_apps.get_model("sessions_app", "Session")
        created = timezone.now() - timedelta(days=3)
        OldSession.objects.filter(pk=world.a.session.pk).update(last_activity_at=None, created_at=created)
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
    with unscoped_tenant_access():
        assert Session.objects.get(pk=world.a.session.pk).last_activity_at == created
        assert Session.objects.get(pk=world.b.session.pk).last_activity_at is not None
