"""Signing in and out, the front door, organization switching, and not-found pages."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from core.models import Membership, Organization, Role
from tests.web.conftest import with_real_password


def test_sign_in_lands_on_the_sessions_list_and_sign_out_returns_to_the_form(page, tenant):
    with_real_password(tenant.member, "pw-acme-member")
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    page.get_by_label("Username").fill("acme-member")
    page.get_by_label("Password").fill("pw-acme-member")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/o/acme/sessions/$"))
    expect(page.get_by_role("heading", name="Sessions")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login/$"))
    page.goto(tenant.path("sessions/"))
    expect(page).to_have_url(re.compile(r"/login/\?next="))


def test_a_wrong_password_is_refused_with_a_message(page, tenant):
    with_real_password(tenant.member, "pw-acme-member")
    page.goto("/login/")
    page.get_by_label("Username").fill("acme-member")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("did not match")
    expect(page).to_have_url(re.compile(r"/login/$"))


def test_people_in_several_organizations_switch_between_them(page, tenant, sign_in):
    other = Organization.objects.create(name="Beta Works", slug="beta")
    Membership.all_tenants_unsafe.create(organization=other, user=tenant.member, role=Role.MEMBER)
    sign_in(tenant.member)
    page.goto(tenant.path("sessions/"))
    switcher = page.locator(".org-switcher")
    switcher.locator("summary").click()
    switcher.get_by_role("link", name="Beta Works").click()
    expect(page).to_have_url(re.compile(r"/o/beta/sessions/$"))
    expect(switcher.locator("summary")).to_contain_text("Beta Works")
    # The front door remembers the organization last visited.
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/o/beta/sessions/$"))


def test_another_organization_is_not_found(page, tenant, sign_in):
    Organization.objects.create(name="Globex", slug="globex")
    sign_in(tenant.member)
    response = page.goto("/o/globex/sessions/")
    assert response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
