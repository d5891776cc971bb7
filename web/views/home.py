"""The front door: ``/`` sends a signed-in person to their first organization's sessions."""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from core.access import organizations_for_user
from web.access import LAST_ORGANIZATION_KEY


def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login("/")
    organizations = organizations_for_user(request.user)
    last = request.session.get(LAST_ORGANIZATION_KEY)
    first = (last and organizations.filter(slug=last).first()) or organizations.order_by("name").first()
    if first is None:
        return render(request, "web/no_organization.html")
    return redirect("web:session-list", first.slug)
