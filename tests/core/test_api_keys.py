"""API keys: managing them over REST, authenticating with them, and how they are stored."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from core.api_keys import api_key_issue
from core.models import ApiKey
from tests.support.assertions import assert_error

# --- managing keys --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_idempotent_retry_of_a_key_creation_never_stores_or_replays_the_secret(world, client_for):
    from core.models import IdempotencyRecord

    c = client_for(world.a.admin)
    url, body = world.a.url("api-keys/"), {"name": "retried", "scopes": ["read"]}
    first = c.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="key-once")
    assert first.status_code == 201 and first.json()["secret"].startswith("sb_")
    again = c.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="key-once")
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["secret"] is None and again.json()["id"] == first.json()["id"]
    (record,) = IdempotencyRecord.all_tenants_unsafe.filter(key="key-once")
    assert first.json()["secret"] not in str(record.response_body)
    assert ApiKey.all_tenants_unsafe.filter(name="retried").count() == 1


def test_create_shows_the_secret_once(world, client_for):
    c = client_for(world.a.admin)
    r = c.post(
        world.a.url("api-keys/"),
        {"name": "CI", "scopes": ["read"], "organization": world.b.org.pk, "prefix": "chosen"},
        format="json",
    )
    assert r.status_code == 201, r.content
    body = r.json()
    secret = body["secret"]
    assert secret.startswith(f"sb_{body['prefix']}_")
    assert body["prefix"] != "chosen"
    assert (body["name"], body["scopes"], body["created_by"], body["is_active"]) == (
        "CI",
        ["read"],
        "acme-admin",
        True,
    )
    key = ApiKey.all_tenants_unsafe.get(pk=body["id"])
    assert key.organization_id == world.a.org.pk
    listed = c.get(world.a.url("api-keys/"))
    retrieved = c.get(world.a.url(f"api-keys/{body['id']}/"))
    for response in (listed, retrieved):
        assert response.status_code == 200
        assert "secret" not in response.content.decode()
        assert secret not in response.content.decode()
    assert "secret" not in retrieved.json()
    assert [k["id"] for k in listed.json()["results"]] == [body["id"]]


def test_default_scopes_are_read_and_write(world, client_for):
    r = client_for(world.a.admin).post(world.a.url("api-keys/"), {"name": "default"}, format="json")
    assert r.json()["scopes"] == ["read", "write"]


@pytest.mark.parametrize(
    ("body", "field"),
    [({"name": "x", "scopes": ["root"]}, "scopes"), ({"name": "x", "scopes": []}, "scopes"), ({}, "name")],
)
def test_create_validation(world, client_for, body, field):
    r = client_for(world.a.admin).post(world.a.url("api-keys/"), body, format="json")
    assert field in assert_error(r, 400, "VALIDATION_ERROR")["details"]


@pytest.mark.parametrize("how", ["revoke", "delete"])
def test_revoke(world, client_for, issue_key, how):
    secret = issue_key(world.a)
    key = ApiKey.all_tenants_unsafe.get()
    c = client_for(world.a.admin)
    if how == "revoke":
        r = c.post(world.a.url(f"api-keys/{key.pk}/revoke/"))
        assert r.status_code == 200, r.content
        assert (r.json()["is_active"], r.json()["revoked_at"] is not None) == (False, True)
    else:
        assert c.delete(world.a.url(f"api-keys/{key.pk}/")).status_code == 204
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert_error(client_for(key=secret).get(world.a.url("sessions/")), 401, "AUTHENTICATION_FAILED")
    # Revoking again is harmless; the row stays for the record.
    assert c.post(world.a.url(f"api-keys/{key.pk}/revoke/")).status_code == 200
    assert c.get(world.a.url(f"api-keys/{key.pk}/")).json()["is_active"] is False


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_only_admins_manage_keys(world, client_for, issue_key, role):
    issue_key(world.a)
    key = ApiKey.all_tenants_unsafe.get()
    c = client_for(getattr(world.a, role))
    assert_error(c.get(world.a.url("api-keys/")), 403, "PERMISSION_DENIED")
    assert_error(c.get(world.a.url(f"api-keys/{key.pk}/")), 403, "PERMISSION_DENIED")
    assert_error(c.post(world.a.url("api-keys/"), {"name": "x"}, format="json"), 403, "PERMISSION_DENIED")
    assert_error(c.post(world.a.url(f"api-keys/{key.pk}/revoke/")), 403, "PERMISSION_DENIED")
    key.refresh_from_db()
    assert key.revoked_at is None


@pytest.mark.parametrize(("method", "path"), [("get", ""), ("delete", ""), ("post", "revoke/")])
def test_foreign_key_is_the_same_404_as_missing(world, client_for, issue_key, method, path):
    issue_key(world.b)
    foreign_key = ApiKey.all_tenants_unsafe.get()
    call = getattr(client_for(world.a.owner), method)
    foreign = call(world.a.url(f"api-keys/{foreign_key.pk}/{path}"))
    missing = call(world.a.url(f"api-keys/{uuid.uuid4()}/{path}"))
    assert_error(foreign, 404, "API_KEY_NOT_FOUND")
    assert foreign.json() == missing.json()
    foreign_key.refresh_from_db()
    assert foreign_key.revoked_at is None


def test_list_never_shows_another_organizations_keys(world, client_for, issue_key):
    issue_key(world.b)
    assert client_for(world.a.owner).get(world.a.url("api-keys/")).json()["results"] == []


# --- authenticating with keys ---------------------------------------------------------------------------


def test_key_works_under_its_own_organization(world, client_for, issue_key):
    r = client_for(key=issue_key(world.a, scopes=["read"])).get(world.a.url("sessions/"))
    assert r.status_code == 200, r.content
    assert [s["id"] for s in r.json()["results"]] == [str(world.a.session.pk)]


def test_key_under_another_organizations_url_is_organization_not_found(world, client_for, issue_key):
    c = client_for(key=issue_key(world.b, scopes=["read", "write", "admin"]))
    foreign = c.get(world.a.url("sessions/"))
    missing = c.get("/api/v1/orgs/no-such-org/sessions/")
    assert_error(foreign, 404, "ORGANIZATION_NOT_FOUND")
    assert foreign.json() == missing.json()
    assert_error(c.get(world.a.url(f"sessions/{world.a.session.pk}/")), 404, "ORGANIZATION_NOT_FOUND")


def test_key_of_a_user_who_is_member_of_both_still_works_only_under_its_own(world, client_for):
    from core.models import Membership

    Membership.all_tenants_unsafe.create(organization=world.b.org, user=world.a.admin, role="owner")
    secret = api_key_issue(
        organization=world.a.org, name="k", scopes=["read"], created_by=world.a.admin
    ).secret
    assert_error(client_for(key=secret).get(world.b.url("sessions/")), 404, "ORGANIZATION_NOT_FOUND")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer sb_",
        "Bearer sb_nounderscore",
        "Bearer sb_deadbeef0000_wrongsecret",
        "Bearer not-a-switchboard-key",
    ],
)
def test_malformed_or_unknown_keys_are_refused(world, client_for, header):
    c = client_for()
    c.credentials(HTTP_AUTHORIZATION=header)
    assert_error(c.get(world.a.url("sessions/")), 401, "AUTHENTICATION_FAILED")


def test_wrong_secret_with_a_real_prefix_is_refused(world, client_for, issue_key):
    secret = issue_key(world.a)
    prefix = secret.split("_")[1]
    forged = f"sb_{prefix}_{'A' * 43}"
    assert_error(client_for(key=forged).get(world.a.url("sessions/")), 401, "AUTHENTICATION_FAILED")


def test_expired_key_is_refused(world, client_for, issue_key):
    secret = issue_key(world.a, expires_at=timezone.now() + timedelta(hours=1))
    c = client_for(key=secret)
    assert c.get(world.a.url("sessions/")).status_code == 200
    ApiKey.all_tenants_unsafe.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_error(c.get(world.a.url("sessions/")), 401, "AUTHENTICATION_FAILED")


def test_revoked_key_is_refused_at_once_despite_the_verification_cache(world, client_for, issue_key):
    secret = issue_key(world.a)
    c = client_for(key=secret)
    assert c.get(world.a.url("sessions/")).status_code == 200
    ApiKey.all_tenants_unsafe.update(revoked_at=timezone.now())
    assert_error(c.get(world.a.url("sessions/")), 401, "AUTHENTICATION_FAILED")


def test_refused_key_response_says_how_to_authenticate(world, client_for):
    r = client_for(key="sb_nope_nope").get(world.a.url("sessions/"))
    assert_error(r, 401, "AUTHENTICATION_FAILED")
    assert r.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("scopes", "read", "write_session", "manage_agents"),
    [
        (["read"], 200, 403, 403),
        (["read", "write"], 200, 201, 403),
        (["write"], 200, 201, 403),
        (["read", "write", "admin"], 200, 201, 201),
    ],
)
def test_scopes_map_to_roles(world, client_for, issue_key, scopes, read, write_session, manage_agents):
    c = client_for(key=issue_key(world.a, scopes=scopes))
    assert c.get(world.a.url("sessions/")).status_code == read
    r = c.post(world.a.url("sessions/"), {"agent": "helper"}, format="json")
    assert r.status_code == write_session, r.content
    r = c.post(world.a.url("agents/"), {"name": "K", "slug": "k"}, format="json")
    assert r.status_code == manage_agents, r.content
    if manage_agents == 403:
        assert r.json()["error"]["code"] == "PERMISSION_DENIED"


def test_read_only_key_cannot_post(world, client_for, issue_key):
    c = client_for(key=issue_key(world.a, scopes=["read"]))
    url = world.a.url(f"sessions/{world.a.session.pk}/messages/")
    error = assert_error(c.post(url, {"content": "hi"}, format="json"), 403, "PERMISSION_DENIED")
    assert error["details"]["role"] == "viewer"
    assert_error(c.post(world.a.url(f"sessions/{world.a.session.pk}/end/")), 403, "PERMISSION_DENIED")


def test_last_used_at_is_recorded(world, client_for, issue_key):
    secret = issue_key(world.a)
    assert ApiKey.all_tenants_unsafe.get().last_used_at is None
    before = timezone.now()
    assert client_for(key=secret).get(world.a.url("sessions/")).status_code == 200
    used = ApiKey.all_tenants_unsafe.get().last_used_at
    assert used is not None and used >= before


def test_only_a_prefix_and_a_pbkdf2_hash_are_stored(world, issue_key):
    secret = issue_key(world.a)
    key = ApiKey.all_tenants_unsafe.get()
    _, prefix, random_part = secret.split("_", 2)
    assert key.prefix == prefix
    assert key.hashed_secret.startswith("pbkdf2_sha256$")
    row = ApiKey.all_tenants_unsafe.filter(pk=key.pk).values().get()
    for value in row.values():
        assert secret not in str(value)
        assert random_part not in str(value)
