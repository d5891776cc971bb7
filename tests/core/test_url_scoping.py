"""Walks every organization URL of the API (DESIGN.md, principle 1: "a test walks every URL of the API and
fails if a view is not scoped").

The static test fails on any view under ``/api/v1/orgs/`` that is not a :class:`TenantScopedViewSet`
(keeping its scoped ``get_queryset``), so a new endpoint cannot skip the base class unnoticed. A plain view
that does its own scoping must say so with ``view.tenant_scoped = True``; the dynamic tests then check that
claim like every other route: for each list and detail route, a member of world.b gets 404 on world.a's URL,
and 404 on its own URL with any one of world.a's object ids in it, with the same body as for a missing id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from django.apps import apps
from django.db import models
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from core.api.viewsets import TenantScopedViewSet
from core.models import Membership
from core.tenancy import tenant_context

ORG_PREFIX = "api/v1/orgs/"
METHOD_PREFERENCE = ["get", "post", "patch", "put", "delete"]


@dataclass(frozen=True)
class Route:
    path: str
    name: str | None
    callback: Any
    kwargs: tuple[str, ...]

    @property
    def view_class(self):
        return getattr(self.callback, "cls", None) or getattr(self.callback, "view_class", None)

    @property
    def methods(self) -> list[str]:
        actions = getattr(self.callback, "actions", None)
        if actions is not None:
            available = set(actions)
        elif self.view_class is not None:
            available = {m for m in self.view_class.http_method_names if hasattr(self.view_class, m)}
        else:
            available = {"get"}
        return [m for m in METHOD_PREFERENCE if m in available]

    @property
    def id(self) -> str:
        return f"{self.name or '?'}:{self.path}"


def _text(pattern) -> str:
    return str(pattern).lstrip("^").rstrip("$")


def _walk(patterns, prefix: str = "", kwargs: tuple[str, ...] = ()):
    for entry in patterns:
        text = prefix + _text(entry.pattern)
        names = kwargs + tuple(entry.pattern.regex.groupindex)
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, text, names)
        elif isinstance(entry, URLPattern):
            yield Route(text, entry.name, entry.callback, names)


def org_routes() -> list[Route]:
    return [r for r in _walk(get_resolver("config.urls").url_patterns) if r.path.startswith(ORG_PREFIX)]


ROUTES = org_routes()


def as_params(routes: list[Route]) -> list:
    # Plain (async) views reach the database from another thread: they need committed test data.
    return [
        pytest.param(
            r, id=r.id, marks=[pytest.mark.django_db(transaction=True)] if r.view_class is None else []
        )
        for r in routes
    ]


# --- static: every view is scoped ---------------------------------------------------------------------


def test_the_walk_finds_the_api():
    names = {r.name for r in ROUTES}
    assert len(ROUTES) >= 20
    assert {"organization-detail", "session-list", "session-detail", "session-message-list"} <= names


def test_every_organization_view_is_tenant_scoped():
    problems = []
    for route in ROUTES:
        cls = route.view_class
        if isinstance(cls, type) and issubclass(cls, TenantScopedViewSet):
            if cls.get_queryset is not TenantScopedViewSet.get_queryset:
                problems.append(f"{route.path}: {cls.__name__} replaces get_queryset (use get_base_queryset)")
            if not hasattr(cls, "model"):
                problems.append(f"{route.path}: {cls.__name__} names no model")
        elif cls is None and getattr(route.callback, "tenant_scoped", False) is True:
            continue  # a plain view that claims its own scoping: the dynamic tests below check the claim
        else:
            problems.append(
                f"{route.path}: {getattr(cls, '__name__', route.callback)!r} is not a TenantScopedViewSet"
            )
    assert not problems, "\n".join(problems)


def test_get_queryset_cannot_be_overridden():
    with pytest.raises(TypeError):

        class Sneaky(TenantScopedViewSet):  # noqa: F841
            def get_queryset(self):
                return None


# --- dynamic: another organization's URLs and ids are not found ---------------------------------------


@pytest.fixture(autouse=True)
def every_feature_on(settings, tmp_path):
    settings.ENABLE_EXEC_SESSIONS = True  # its routes then answer with rows, not "disabled"
    settings.MEDIA_ROOT = str(tmp_path)


def _message(tenant, objects):
    from sessions_app.services.messages import message_append

    return message_append(tenant.session, role="user", content="hello")


def _tool_call(tenant, objects):
    from tools_app.models import ToolCall

    return ToolCall.objects.create(organization=tenant.org, session=tenant.session, tool_name="calculator")


def _tag(tenant, objects):
    from sessions_app.models import Tag

    return Tag.objects.create(organization=tenant.org, name=f"{tenant.slug}-tag")


def _template(tenant, objects):
    from sessions_app.models import SessionTemplate

    return SessionTemplate.objects.create(organization=tenant.org, name=f"{tenant.slug} template")


def _bookmark(tenant, objects):
    from history_app.models import Bookmark

    return Bookmark.objects.create(organization=tenant.org, user=tenant.owner, session=tenant.session)


def _api_key(tenant, objects):
    from core.api_keys import api_key_issue

    return api_key_issue(organization=tenant.org, name="scoping", created_by=tenant.owner).api_key


def _run(tenant, objects):
    from sessions_app.models import Run

    return Run.objects.create(organization=tenant.org, session=tenant.session)


def _tool_policy(tenant, objects):
    from tools_app.models import ToolPolicy

    return ToolPolicy.objects.create(organization=tenant.org, tool_name="calculator")


def _provider(tenant, objects):
    from sessions_app.models import ProviderCredential

    return ProviderCredential.objects.create(organization=tenant.org, name="scoping", kind="compatible")


def _exec_session(tenant, objects):
    from tools_app.models import ExecSession

    # Stopped: the routes are exercised without starting a sandbox.
    return ExecSession.objects.create(organization=tenant.org, mode="python", status="stopped")


def _export(tenant, objects):
    from history_app.models import Export

    return Export.objects.create(organization=tenant.org, created_by=tenant.owner)


def _checkpoint(tenant, objects):
    from sessions_app.models import Checkpoint

    return Checkpoint.objects.create(organization=tenant.org, session=tenant.session, seq=1, message_seq=0)


def _attachment(tenant, objects):
    import hashlib

    from django.core.files.base import ContentFile

    from sessions_app.models import Attachment, Message

    data = f"notes of {tenant.slug}".encode()
    attachment = Attachment(
        organization=tenant.org,
        message=objects.get(tenant, Message),
        filename="notes.txt",
        content_type="text/plain",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    attachment.file.save("notes.txt", ContentFile(data), save=True)
    return attachment


# The object a detail route of each model is tried with. Models not listed fall back to any row of the
# tenant (world has agents, sessions, memberships); a model with neither fails the test: add a factory.
FACTORIES = {
    "sessions_app.Agent": lambda t, o: t.agent,
    "sessions_app.Session": lambda t, o: t.session,
    "core.Membership": lambda t, o: Membership.objects.get(user=t.owner),
    "sessions_app.Message": _message,
    "tools_app.ToolCall": _tool_call,
    "sessions_app.Tag": _tag,
    "sessions_app.SessionTemplate": _template,
    "history_app.Bookmark": _bookmark,
    "core.ApiKey": _api_key,
    "sessions_app.Run": _run,
    "tools_app.ToolPolicy": _tool_policy,
    "sessions_app.ProviderCredential": _provider,
    "tools_app.ExecSession": _exec_session,
    "history_app.Export": _export,
    "sessions_app.Checkpoint": _checkpoint,
    "sessions_app.Attachment": _attachment,
}

# Query parameters a list route needs to answer 200.
LIST_QUERY = {"search-list": {"q": "hello"}}


class Objects:
    """One object per model and tenant, made on first use inside the tenant's context."""

    def __init__(self, world):
        self.world = world
        self.made: dict[tuple[str, str], models.Model] = {}

    def get(self, tenant, model: type[models.Model]) -> models.Model:
        label = model._meta.label
        if (tenant.slug, label) not in self.made:
            with tenant_context(tenant.org):
                if label in FACTORIES:
                    obj = FACTORIES[label](tenant, self)
                else:
                    obj = model.all_tenants_unsafe.filter(organization=tenant.org).first()
                    if obj is None:
                        pytest.fail(f"test_url_scoping.py has no factory for {label}: add one to FACTORIES")
            self.made[(tenant.slug, label)] = obj
        return self.made[(tenant.slug, label)]


def _kwarg_model(route: Route, kwarg: str) -> type[models.Model]:
    from sessions_app.models import Message, Session

    if kwarg == "session_id":
        return Session
    if kwarg == "message_id":
        return Message
    if kwarg == "pk" and route.view_class is not None:
        return route.view_class.model
    pytest.fail(f"{route.path}: unknown URL kwarg {kwarg!r}; teach test_url_scoping.py which object it names")


def _url(route: Route, values: dict[str, Any]) -> str:
    return reverse(route.name, kwargs={k: str(v) for k, v in values.items()})


def _ids(route: Route, objects: Objects, tenant) -> dict[str, Any]:
    return {k: objects.get(tenant, _kwarg_model(route, k)).pk for k in route.kwargs if k != "org_slug"}


def _missing_id(route: Route, kwarg: str):
    pk = _kwarg_model(route, kwarg)._meta.pk
    return uuid.uuid4() if isinstance(pk, models.UUIDField) else 987654321


def _request(client, route: Route, url: str):
    method = route.methods[0]
    if method == "get":
        return client.get(url)
    return getattr(client, method)(url, {}, content_type="application/json")


def _assert_not_found(response, context: str) -> dict:
    assert response.status_code == 404, (context, response.status_code, response.content[:300])
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"].endswith("NOT_FOUND"), (context, body)
    return body


@pytest.mark.parametrize("route", as_params(ROUTES))
def test_another_organizations_url_is_not_found(world, client, route):
    assert route.methods, f"{route.path} serves no method"
    client.force_login(world.b.owner)
    objects = Objects(world)
    a_ids = _ids(route, objects, world.a)
    foreign = _request(client, route, _url(route, {"org_slug": world.a.slug, **a_ids}))
    missing = _request(client, route, _url(route, {"org_slug": "no-such-org", **a_ids}))
    assert _assert_not_found(foreign, "foreign org")["error"]["code"] == "ORGANIZATION_NOT_FOUND"
    assert foreign.json() == missing.json()


@pytest.mark.parametrize("route", as_params([r for r in ROUTES if set(r.kwargs) - {"org_slug"}]))
def test_another_organizations_ids_are_not_found_under_ones_own_url(world, client, route):
    client.force_login(world.b.owner)
    objects = Objects(world)
    own = _ids(route, objects, world.b)
    foreign_ids = _ids(route, objects, world.a)
    for kwarg in own:
        foreign = _request(
            client, route, _url(route, {"org_slug": world.b.slug, **own, kwarg: foreign_ids[kwarg]})
        )
        missing = _request(
            client, route, _url(route, {"org_slug": world.b.slug, **own, kwarg: _missing_id(route, kwarg)})
        )
        _assert_not_found(foreign, f"world.a's {kwarg}")
        assert foreign.json() == missing.json(), kwarg
    # The same route with world.b's own ids is found: the 404s above are about the ids, not the route.
    response = _request(client, route, _url(route, {"org_slug": world.b.slug, **own}))
    assert response.status_code != 404, (
        response.status_code,
        b"" if response.streaming else response.content,
    )
    response.close()  # a stream is not read: it would not end


LIST_ROUTES = [
    r
    for r in ROUTES
    if r.view_class is not None and r.methods and r.methods[0] == "get" and "pk" not in r.kwargs
]


@pytest.mark.parametrize("route", LIST_ROUTES, ids=lambda r: r.id)
def test_lists_never_show_another_organizations_rows(world, client, route):
    client.force_login(world.b.owner)
    objects = Objects(world)
    own = _ids(route, objects, world.b)
    foreign_ids = {
        str(objects.get(world.a, model).pk)
        for model in map(apps.get_model, FACTORIES)
        if isinstance(model._meta.pk, models.UUIDField)
    }
    response = client.get(_url(route, {"org_slug": world.b.slug, **own}), LIST_QUERY.get(route.name))
    assert response.status_code == 200, response.content[:300]
    text = response.content.decode()
    leaked = [pk for pk in foreign_ids if pk in text]
    assert not leaked, leaked
