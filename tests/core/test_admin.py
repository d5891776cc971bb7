"""Django admin on a multi-tenant site: superusers see everything, org admins only their organizations."""

from __future__ import annotations

import re

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from core.models import ApiKey, Membership
from core.tenancy import tenant_context
from sessions_app.models import Agent, Message, Session, SessionEvent
from sessions_app.services.messages import message_append
from tests.conftest import make_user
from tools_app.models import ToolCall


def admin_url(model, view: str = "changelist", *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def change_url(obj) -> str:
    return admin_url(type(obj), "change", obj.pk)


@pytest.fixture
def content(world):
    """A message, a tool call and an API key in each organization."""
    made = {}
    for name, tenant in (("a", world.a), ("b", world.b)):
        with tenant_context(tenant.org):
            message = message_append(tenant.session, role="user", content=f"hello from {tenant.slug}")
            call = ToolCall.objects.create(
                organization=tenant.org, session=tenant.session, tool_name=f"{tenant.slug}_tool"
            )
        from core.api_keys import api_key_issue

        key = api_key_issue(organization=tenant.org, name=f"{tenant.slug} key").api_key
        made[name] = {"message": message, "call": call, "key": key}
    return made


@pytest.fixture
def org_admin(world, client):
    """world.a's admin, made staff: manages world.a only."""
    world.a.admin.is_staff = True
    world.a.admin.save(update_fields=["is_staff"])
    client.force_login(world.a.admin)
    return client


def objects_of(world, content, tenant_name: str) -> dict[str, object]:
    tenant = getattr(world, tenant_name)
    return {
        "session": tenant.session,
        "agent": tenant.agent,
        "message": content[tenant_name]["message"],
        "api key": content[tenant_name]["key"],
        "member": Membership.all_tenants_unsafe.get(organization=tenant.org, user=tenant.member),
    }


CHANGELISTS = ["session", "agent", "message", "api key", "member"]


@pytest.mark.parametrize("kind", CHANGELISTS)
def test_superuser_sees_every_organization(world, client, content, kind):
    client.force_login(make_user("root", is_superuser=True, is_staff=True))
    a, b = objects_of(world, content, "a")[kind], objects_of(world, content, "b")[kind]
    r = client.get(admin_url(type(a)))
    assert r.status_code == 200
    html = r.content.decode()
    assert change_url(a) in html and change_url(b) in html


@pytest.mark.parametrize("kind", CHANGELISTS)
def test_org_admin_sees_only_their_organization(world, org_admin, content, kind):
    a, b = objects_of(world, content, "a")[kind], objects_of(world, content, "b")[kind]
    r = org_admin.get(admin_url(type(a)))
    assert r.status_code == 200
    html = r.content.decode()
    assert change_url(a) in html
    assert change_url(b) not in html
    assert org_admin.get(change_url(a)).status_code == 200


@pytest.mark.parametrize("kind", CHANGELISTS)
def test_org_admin_cannot_open_another_organizations_object(world, org_admin, content, kind):
    b = objects_of(world, content, "b")[kind]
    r = org_admin.get(change_url(b))
    # Django admin treats an object outside the queryset as missing: a redirect to the index with a notice.
    assert r.status_code == 302
    assert r.url == reverse("admin:index")
    notices = [str(m) for m in get_messages(r.wsgi_request)]
    assert any("doesn’t exist" in n or "doesn't exist" in n for n in notices), notices


def test_org_admin_cannot_change_or_delete_another_organizations_session(world, org_admin):
    r = org_admin.post(change_url(world.b.session), {"name": "hijacked"})
    assert r.status_code == 302 and r.url == reverse("admin:index")
    r = org_admin.post(admin_url(Session, "delete", world.b.session.pk), {"post": "yes"})
    assert r.status_code == 302 and r.url == reverse("admin:index")
    session = Session.all_tenants_unsafe.get(pk=world.b.session.pk)
    assert session.name == "globex session"


def test_org_admin_actions_skip_other_organizations(world, org_admin):
    r = org_admin.post(
        admin_url(Session),
        {"action": "end", "_selected_action": [str(world.a.session.pk), str(world.b.session.pk)]},
    )
    assert r.status_code == 302
    assert Session.all_tenants_unsafe.get(pk=world.a.session.pk).status == "ended"
    assert Session.all_tenants_unsafe.get(pk=world.b.session.pk).status == "created"


def test_changelist_filters_offer_only_the_organizations_values(world, org_admin):
    from sessions_app.models import Tag
    from sessions_app.services.lifecycle import session_update

    with tenant_context(world.a.org):
        session_update(world.a.session, tags=[Tag.objects.create(organization=world.a.org, name="acme-tag")])
    with tenant_context(world.b.org):
        session_update(
            world.b.session, tags=[Tag.objects.create(organization=world.b.org, name="globex-tag")]
        )
    html = org_admin.get(admin_url(Session)).content.decode()
    assert "acme-tag" in html
    assert "globex-tag" not in html
    assert "Globex" not in html


def test_foreign_key_choices_list_only_the_organizations_rows(world, org_admin):
    with tenant_context(world.a.org):
        Agent.objects.create(organization=world.a.org, name="Second A agent", slug="second")
    r = org_admin.get(change_url(world.a.session))
    assert r.status_code == 200
    form = r.context["adminform"].form
    agents = set(form.fields["agent"].queryset)
    assert agents == set(Agent.all_tenants_unsafe.filter(organization=world.a.org))
    html = r.content.decode()
    assert str(world.a.agent.pk) in html and str(world.b.agent.pk) not in html
    orgs = set(form.fields["organization"].queryset)
    assert orgs == {world.a.org}


def test_superuser_choices_span_organizations(world, client):
    client.force_login(make_user("root", is_superuser=True, is_staff=True))
    r = client.get(change_url(world.a.session))
    agents = set(r.context["adminform"].form.fields["agent"].queryset)
    assert {world.a.agent, world.b.agent} <= agents


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_staff_without_an_admin_role_sees_nothing(world, client, content, role):
    user = getattr(world.a, role)
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    client.force_login(user)
    index = client.get(reverse("admin:index"))
    assert index.status_code == 200
    assert index.context["app_list"] == []
    for kind, obj in objects_of(world, content, "a").items():
        assert client.get(admin_url(type(obj))).status_code == 403, kind
        assert client.get(change_url(obj)).status_code in (302, 403), kind


def test_non_staff_admin_is_sent_to_the_login(world, client):
    client.force_login(world.a.admin)  # admin in the organization, but not staff
    r = client.get(admin_url(Session))
    assert r.status_code == 302
    assert "login" in r.url


def test_session_change_page_shows_messages_tool_calls_and_events(world, org_admin, content):
    r = org_admin.get(change_url(world.a.session))
    assert r.status_code == 200
    html = r.content.decode()
    assert "hello from acme" in html
    assert "acme_tool" in html
    assert "session.created" in html and "message.created" in html
    assert "hello from globex" not in html and "globex_tool" not in html
    inline_models = {formset.formset.model for formset in r.context["inline_admin_formsets"]}
    assert {Message, ToolCall, SessionEvent} <= inline_models


@pytest.mark.parametrize(
    ("setup", "action", "status", "event"),
    [
        (["activate"], "suspend", "suspended", "session.suspended"),
        (["activate", "suspend"], "resume", "active", "session.activated"),
        ([], "end", "ended", "session.ended"),
    ],
)
def test_session_actions_go_through_the_services(world, org_admin, setup, action, status, event):
    from sessions_app.services import lifecycle

    session = world.a.session
    with tenant_context(world.a.org):
        for step in setup:
            session = getattr(lifecycle, f"session_{step}")(session)
    before = SessionEvent.all_tenants_unsafe.filter(session=session).count()
    r = org_admin.post(admin_url(Session), {"action": action, "_selected_action": [str(session.pk)]})
    assert r.status_code == 302
    stored = Session.all_tenants_unsafe.get(pk=session.pk)
    assert stored.status == status
    events = list(SessionEvent.all_tenants_unsafe.filter(session=session).order_by("seq"))
    assert len(events) == before + 1
    assert events[-1].type == event
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    if action == "end":
        assert stored.ended_reason == "admin"


def test_an_illegal_action_is_reported_not_applied(world, org_admin):
    r = org_admin.post(
        admin_url(Session), {"action": "resume", "_selected_action": [str(world.a.session.pk)]}, follow=True
    )
    notices = [str(m) for m in r.context["messages"]]
    assert any("Cannot resume" in n for n in notices), notices
    assert Session.all_tenants_unsafe.get(pk=world.a.session.pk).status == "created"


def test_creating_an_api_key_shows_the_secret_once_and_stores_a_hash(world, org_admin):
    r = org_admin.post(
        admin_url(ApiKey, "add"),
        {"organization": str(world.a.org.pk), "name": "from admin", "scopes": ["read", "write"]},
        follow=True,
    )
    assert r.redirect_chain and r.status_code == 200
    notices = [str(m) for m in r.context["messages"]]
    secrets_shown = [s for n in notices for s in re.findall(r"sb_[0-9a-f]+_[A-Za-z0-9_-]+", n)]
    assert len(secrets_shown) == 1, notices
    secret = secrets_shown[0]
    key = ApiKey.all_tenants_unsafe.get(name="from admin")
    assert (key.organization_id, key.scopes, key.created_by) == (
        world.a.org.pk,
        ["read", "write"],
        world.a.admin,
    )
    assert secret.startswith(f"sb_{key.prefix}_")
    assert key.hashed_secret.startswith("pbkdf2_sha256$")
    row = ApiKey.all_tenants_unsafe.filter(pk=key.pk).values().get()
    assert all(secret.split("_", 2)[2] not in str(v) for v in row.values())
    # It was shown once: no page shows it again.
    for url in (change_url(key), admin_url(ApiKey), change_url(key)):
        page = org_admin.get(url).content.decode()
        assert secret.split("_", 2)[2] not in page, url
    # And the key works.
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert api.get(world.a.url("sessions/")).status_code == 200


def test_org_admin_cannot_create_a_key_for_another_organization(world, org_admin):
    r = org_admin.post(
        admin_url(ApiKey, "add"),
        {"organization": str(world.b.org.pk), "name": "sneaky", "scopes": ["read"]},
    )
    assert r.status_code == 200  # the form is shown again with an error
    assert "organization" in r.context["adminform"].form.errors
    assert not ApiKey.all_tenants_unsafe.filter(name="sneaky").exists()


def test_revoke_action(world, org_admin, content):
    key = content["a"]["key"]
    r = org_admin.post(admin_url(ApiKey), {"action": "revoke", "_selected_action": [str(key.pk)]})
    assert r.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None


@pytest.mark.parametrize("model_name", ["tag", "sessiontemplate"])
def test_org_admin_cannot_make_a_system_preset(world, org_admin, model_name):
    """A tag or template without an organization is shown to every organization: only superusers may
    make one. An organization's admin must pick one of their organizations."""
    from sessions_app.models import SessionTemplate, Tag

    model = {"tag": Tag, "sessiontemplate": SessionTemplate}[model_name]
    form = org_admin.get(admin_url(model, "add")).context["adminform"].form
    assert form.fields["organization"].required
    fields = {"name": "Everyone's", "organization": "", "agent": str(world.a.agent.pk), "color": "#112233"}
    r = org_admin.post(admin_url(model, "add"), fields)
    assert r.status_code == 200 and "organization" in r.context["adminform"].form.errors
    assert not model.all_tenants_unsafe.filter(name="Everyone's").exists()


def test_a_session_cannot_run_on_another_organizations_agent(world):
    from core.errors import SwitchboardError
    from sessions_app.services.lifecycle import session_create

    with tenant_context(world.b.org), pytest.raises(SwitchboardError) as refused:
        session_create(organization=world.b.org, agent=world.a.agent, owner=world.b.member)
    assert refused.value.code.value == "VALIDATION_ERROR"
    assert not Session.all_tenants_unsafe.filter(organization=world.b.org, agent=world.a.agent).exists()


def membership_of(tenant, user) -> Membership:
    return Membership.all_tenants_unsafe.get(organization=tenant.org, user=user)


def test_admin_keeps_the_owner_rules_for_memberships(world, org_admin, client):
    """As over the API: only owners grant, change or remove the owner role; an organization keeps one."""
    member, owner, admin = (membership_of(world.a, u) for u in (world.a.member, world.a.owner, world.a.admin))
    for membership, role in ((member, "owner"), (admin, "owner"), (owner, "member")):
        r = org_admin.post(change_url(membership), {"role": role})
        assert r.status_code == 200 and "Only owners" in str(r.context["adminform"].form.errors)
        assert membership_of(world.a, membership.user).role == membership.role
    assert org_admin.post(admin_url(Membership, "delete", owner.pk), {"post": "yes"}).status_code == 403
    assert Membership.all_tenants_unsafe.filter(pk=owner.pk).exists()
    assert org_admin.post(change_url(member), {"role": "viewer"}).status_code == 302
    assert membership_of(world.a, world.a.member).role == "viewer"

    client.force_login(make_user("root", is_superuser=True, is_staff=True))
    r = client.post(change_url(owner), {"role": "member"})  # the organization's only owner
    assert r.status_code == 200 and "at least one owner" in str(r.context["adminform"].form.errors)
    assert membership_of(world.a, world.a.owner).role == "owner"


def test_provider_credentials_in_admin_keep_the_key_encrypted_and_write_only(world, org_admin):
    from core.crypto import decrypt
    from sessions_app.models import ProviderCredential

    fields = {
        "organization": str(world.a.org.pk),
        "kind": "compatible",
        "base_url": "http://llm.internal/v1",
        "api_version": "",
        "default_model": "served",
        "timeout_seconds": "30",
        "max_retries": "1",
        "make_default": "on",
    }
    r = org_admin.post(admin_url(ProviderCredential, "add"), {**fields, "name": "first", "api_key": "sk-one"})
    assert r.status_code == 302, r.context["adminform"].form.errors if r.context else r
    first = ProviderCredential.all_tenants_unsafe.get(name="first")
    assert first.api_key_encrypted != "sk-one" and decrypt(first.api_key_encrypted) == "sk-one"
    page = org_admin.get(change_url(first)).content.decode()
    assert "sk-one" not in page and first.api_key_encrypted not in page

    # A second default takes the flag; an empty key field keeps the stored key.
    add = admin_url(ProviderCredential, "add")
    r = org_admin.post(add, {**fields, "name": "second", "api_key": "sk-two"})
    assert r.status_code == 302, r.context["adminform"].form.errors
    assert org_admin.post(change_url(first), {**fields, "name": "first", "api_key": ""}).status_code == 302
    first.refresh_from_db()
    assert decrypt(first.api_key_encrypted) == "sk-one" and first.is_default
    assert not ProviderCredential.all_tenants_unsafe.get(name="second").is_default

    r = org_admin.post(admin_url(ProviderCredential, "add"), {**fields, "name": "first", "api_key": "x"})
    assert r.status_code == 200 and "already exists" in str(r.context["adminform"].form.errors)
    r = org_admin.post(
        admin_url(ProviderCredential, "add"), {**fields, "organization": str(world.b.org.pk), "name": "b"}
    )
    assert r.status_code == 200 and "organization" in r.context["adminform"].form.errors


@pytest.mark.parametrize("model_name", ["providercredential", "checkpoint", "toolpolicy"])
def test_every_model_has_an_admin_scoped_to_the_organization(world, org_admin, model_name):
    from django.apps import apps

    model = next(m for m in apps.get_models() if m._meta.model_name == model_name)
    r = org_admin.get(admin_url(model))
    assert r.status_code == 200
    assert set(r.context["cl"].queryset.values_list("organization_id", flat=True)) <= {world.a.org.pk}


def test_user_choices_list_only_the_organizations_people(world, org_admin):
    stranger = make_user("someone-elsewhere")
    form = org_admin.get(change_url(world.a.session)).context["adminform"].form
    owners = set(form.fields["owner"].queryset)
    assert world.a.member in owners and world.b.member not in owners and stranger not in owners
    # Adding a member still takes any account (by id).
    form = org_admin.get(admin_url(Membership, "add")).context["adminform"].form
    assert stranger in set(form.fields["user"].queryset)
