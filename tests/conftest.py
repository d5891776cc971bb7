"""Shared fixtures. Every test world has two organizations with a user of each role, so a cross-tenant
case is one line: act as ``world.b.member`` on ``world.a``'s objects."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from rest_framework.test import APIClient

from core.api_keys import api_key_issue
from core.models import Membership, Organization, Role
from core.tenancy import tenant_context
from sessions_app.models import Agent, Session, SessionTemplate, Tag
from sessions_app.services.lifecycle import session_create

User = get_user_model()


@dataclass
class Tenant:
    org: Organization
    owner: Any
    admin: Any
    member: Any
    viewer: Any
    agent: Agent
    session: Session  # owned by ``member``

    @property
    def slug(self) -> str:
        return self.org.slug

    def url(self, path: str = "") -> str:
        return f"/api/v1/orgs/{self.org.slug}/{path}"


@dataclass
class World:
    a: Tenant
    b: Tenant


@functools.cache
def _password_hash(password: str) -> str:
    # A real PBKDF2 hash (servers started by end-to-end tests check it), made once per password: at a
    # quarter of a second each, hashing the same eight passwords for every test would dominate the suite.
    return make_password(password)


def make_user(username: str, **extra) -> Any:
    user = User.objects.create_user(username=username, email=f"{username}@example.com", **extra)
    user.password = _password_hash("pw-" + username)
    user.save(update_fields=["password"])
    return user


def make_tenant(slug: str) -> Tenant:
    org = Organization.objects.create(name=slug.title(), slug=slug)
    users = {}
    with tenant_context(org):
        for role in (Role.OWNER, Role.ADMIN, Role.MEMBER, Role.VIEWER):
            user = make_user(f"{slug}-{role}")
            Membership.objects.create(organization=org, user=user, role=role)
            users[str(role)] = user
        agent = Agent.objects.create(
            organization=org,
            name=f"{slug} agent",
            slug="helper",
            system_prompt="Be brief.",
            model="test-model",
        )
        session = session_create(organization=org, agent=agent, owner=users["member"], name=f"{slug} session")
    return Tenant(org=org, agent=agent, session=session, **users)


@pytest.fixture(autouse=True)
def fresh_channel_layers():
    """Channel layers of the test's own. A test's event loop ends with the test, and channels-redis keeps
    receive locks and buffers per layer instance: what one test's loop left there broke the next test's
    websocket consumers, each failure feeding the next."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def _without_system_presets(request):
    """The system tags and templates made by a data migration exist in the test database too. Tests build
    the presets they talk about and compare whole lists, so they start without the migration's: deleted
    inside the test, which the test's rollback undoes (a transactional test's flush empties the tables
    anyway). A test that wants them asks for ``system_presets``."""
    if "system_presets" in request.fixturenames:
        return
    if "_django_db_helper" not in request.fixturenames and not request.node.get_closest_marker("django_db"):
        return
    request.getfixturevalue("_django_db_helper")  # the database ``db`` / ``transactional_db`` set up
    SessionTemplate.all_tenants_unsafe.filter(organization=None).delete()
    Tag.all_tenants_unsafe.filter(organization=None).delete()


@pytest.fixture
def system_presets(db) -> dict[str, list]:
    """The system tags and templates as the migrations left them: ``{"tags": [...], "templates": [...]}``."""
    return {
        "tags": list(Tag.all_tenants_unsafe.filter(organization=None).order_by("name")),
        "templates": list(SessionTemplate.all_tenants_unsafe.filter(organization=None).order_by("name")),
    }


@pytest.fixture
def world(db) -> World:
    return World(a=make_tenant("acme"), b=make_tenant("globex"))


@pytest.fixture
def client_for():
    """An API client logged in as a user, or authenticating with an API key secret."""

    def make(user=None, key: str | None = None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_authenticate(user=user)
        if key is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        return client

    return make


@pytest.fixture
def issue_key():
    def make(tenant: Tenant, scopes=("read", "write"), **kwargs) -> str:
        return api_key_issue(
            organization=tenant.org, name="test key", scopes=list(scopes), created_by=tenant.admin, **kwargs
        ).secret

    return make
