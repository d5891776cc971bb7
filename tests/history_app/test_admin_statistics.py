"""The session's admin change page shows its statistics; exports are listed read-only."""

from __future__ import annotations

from django.urls import reverse

from history_app.models import Export
from tests.conftest import make_user
from tests.history_app.builders import add_message, add_run


def test_session_change_page_has_a_statistics_section(world, client):
    add_message(world.a, "one")
    add_message(world.a, "two", role="assistant")
    add_run(world.a, status="completed", prompt_tokens=11, completion_tokens=4, ttft_ms=250, total_ms=900)
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    response = client.get(reverse("admin:sessions_app_session_change", args=[world.a.session.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Statistics" in html and "history-statistics" in html
    assert "11 in · 4 out" in html and "median 250.0 ms" in html
    assert "user 1" in html and "assistant 1" in html


def test_the_add_page_has_no_statistics(world, client):
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    response = client.get(reverse("admin:sessions_app_session_add"))
    assert response.status_code == 200 and "history-statistics" not in response.content.decode()


def test_org_admins_see_their_exports_only(world, client):
    Export.all_tenants_unsafe.create(organization=world.a.org, created_by=world.a.admin, total=1)
    Export.all_tenants_unsafe.create(organization=world.b.org, created_by=world.b.admin, total=2)
    world.a.admin.is_staff = True
    world.a.admin.save(update_fields=["is_staff"])
    client.force_login(world.a.admin)
    response = client.get(reverse("admin:history_app_export_changelist"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "acme-admin" in html and "globex-admin" not in html
