"""The fail-closed tenant manager, the tenant context and the shared catalogues (DESIGN.md, principle 1)."""

from __future__ import annotations

import pytest

from core.models import Membership
from core.tenancy import (
    TenantContextMissing,
    current_organization,
    tenant_context,
    unscoped_tenant_access,
)
from sessions_app.models import Agent, Session, SessionTemplate, Tag


@pytest.mark.parametrize("model", [Agent, Session, Membership])
def test_default_manager_raises_without_a_tenant(world, model):
    with pytest.raises(TenantContextMissing):
        list(model.objects.all())
    with pytest.raises(TenantContextMissing):
        model.objects.filter(pk=1).exists()


def test_shared_catalogue_managers_also_fail_closed(world):
    with pytest.raises(TenantContextMissing):
        list(Tag.objects.all())
    with pytest.raises(TenantContextMissing):
        list(SessionTemplate.objects.all())


def test_tenant_context_scopes_to_its_organization(world):
    with tenant_context(world.a.org):
        assert list(Session.objects.all()) == [world.a.session]
        assert list(Agent.objects.all()) == [world.a.agent]
        assert Membership.objects.count() == 4
        assert not Session.objects.filter(pk=world.b.session.pk).exists()
    with tenant_context(world.b.org):
        assert list(Session.objects.all()) == [world.b.session]


def test_tenant_context_nests_and_restores(world):
    assert current_organization() is None
    with tenant_context(world.a.org):
        with tenant_context(world.b.org):
            assert current_organization() == world.b.org
            assert list(Agent.objects.all()) == [world.b.agent]
        assert current_organization() == world.a.org
        assert list(Agent.objects.all()) == [world.a.agent]
    assert current_organization() is None


def test_tenant_context_needs_a_saved_organization(world):
    from core.models import Organization

    with pytest.raises(TenantContextMissing):
        with tenant_context(Organization(name="unsaved", slug="unsaved")):
            pass


def test_all_tenants_unsafe_sees_every_organization(world):
    assert set(Session.all_tenants_unsafe.all()) == {world.a.session, world.b.session}
    assert Agent.all_tenants_unsafe.count() == 2


def test_unscoped_tenant_access_lifts_the_scope_until_a_tenant_context(world):
    with unscoped_tenant_access():
        assert set(Session.objects.all()) == {world.a.session, world.b.session}
        # A tenant context inside an unscoped block scopes again: consumers and tasks stay confined.
        with tenant_context(world.a.org):
            assert list(Session.objects.all()) == [world.a.session]
    with pytest.raises(TenantContextMissing):
        list(Session.objects.all())


def test_related_managers_are_not_a_way_around_the_scope(world):
    # Reverse relations use the default manager too; without a context they fail closed.
    agent = Agent.all_tenants_unsafe.get(pk=world.a.agent.pk)
    with pytest.raises(TenantContextMissing):
        list(agent.sessions.all())
    with tenant_context(world.a.org):
        assert list(agent.sessions.all()) == [world.a.session]


def test_shared_catalogues_show_system_rows_and_own_rows(world):
    system_tag = Tag.all_tenants_unsafe.create(name="urgent", is_system=True)
    system_template = SessionTemplate.all_tenants_unsafe.create(name="Support", is_system=True)
    with tenant_context(world.a.org):
        own_tag = Tag.objects.create(organization=world.a.org, name="a-only")
        own_template = SessionTemplate.objects.create(organization=world.a.org, name="A template")
    with tenant_context(world.b.org):
        b_tag = Tag.objects.create(organization=world.b.org, name="b-only")
        b_template = SessionTemplate.objects.create(organization=world.b.org, name="B template")

    with tenant_context(world.a.org):
        assert set(Tag.objects.all()) == {system_tag, own_tag}
        assert set(SessionTemplate.objects.all()) == {system_template, own_template}
    with tenant_context(world.b.org):
        assert set(Tag.objects.all()) == {system_tag, b_tag}
        assert set(SessionTemplate.objects.all()) == {system_template, b_template}


def test_tenant_owned_rows_carry_an_indexed_organization():
    from django.apps import apps

    from core.tenancy import TenantOwnedModel

    tenant_models = [m for m in apps.get_models() if issubclass(m, TenantOwnedModel)]
    assert len(tenant_models) >= 10
    for model in tenant_models:
        field = model._meta.get_field("organization")
        assert field.db_index, model
        assert isinstance(model._default_manager, type(model.objects)), model
        assert model._default_manager is model.objects, model
