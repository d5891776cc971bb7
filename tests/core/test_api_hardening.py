"""Inputs and clients that used to get a 500 (or a wrong answer) from the API's shared machinery."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


# --- the browsable API ------------------------------------------------------------------------------------


LIST_PATHS = [
    "sessions/",
    "sessions/{session}/messages/",
    "agents/",
    "tool-calls/",
    "tags/",
    "bookmarks/",
    "members/",
    "api-keys/",
]


@pytest.mark.parametrize("path", LIST_PATHS)
def test_the_browsable_api_renders_list_endpoints(world, path):
    """Its filter form queries the rows while the page renders: that is inside the tenant context too."""
    client = Client(raise_request_exception=False)
    client.force_login(world.a.admin)
    r = client.get(world.a.url(path.format(session=world.a.session.pk)), HTTP_ACCEPT="text/html")
    assert r.status_code == 200, r.content[:300]
    assert r["Content-Type"].startswith("text/html")
    html = r.content.decode()
    assert world.b.session.name not in html and str(world.b.session.pk) not in html


def test_the_browsable_api_lists_this_organizations_sessions_only(world):
    client = Client(raise_request_exception=False)
    client.force_login(world.a.admin)
    html = client.get(world.a.url("sessions/"), HTTP_ACCEPT="text/html").content.decode()
    assert str(world.a.session.pk) in html
    assert str(world.b.session.pk) not in html
