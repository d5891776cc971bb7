"""How a web page reaches an organization: every ``/o/<org_slug>/...`` view is wrapped in :func:`org_view`.

It signs the visitor in first, resolves the organization and the visitor's role with the same
``resolve_access`` the API uses (a foreign organization is the same 404 as a missing one), checks the
page's minimum role, and runs the view inside ``tenant_context`` so every query is scoped. Catalogued
errors raised by services become a 404/403 page, or a message next to the form that caused them.
"""

from __future__ import annotations

from functools import wraps
from urllib.parse import urlparse

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from core.access import resolve_access
from core.errors import ErrorCode, SwitchboardError, not_found
from core.models import Role
from core.tenancy import tenant_context

LAST_ORGANIZATION_KEY = "web:organization"  # where ``/`` takes the visitor next time


def org_view(min_role: str = Role.VIEWER):
    """Decorate a view taking ``(request, ...)``; ``request.access`` and ``request.organization`` are set."""

    def decorator(view):
        @wraps(view)
        def wrapper(request: HttpRequest, org_slug: str, *args, **kwargs) -> HttpResponse:
            if not request.user.is_authenticated:
                return to_sign_in(request)
            try:
                access = resolve_access(org_slug, request.user)
            except SwitchboardError as error:
                return error_response(request, error)
            request.access = access
            request.organization = access.organization
            if request.session.get(LAST_ORGANIZATION_KEY) != access.organization.slug:
                request.session[LAST_ORGANIZATION_KEY] = access.organization.slug
            with tenant_context(access.organization):
                try:
                    if not access.has_role(min_role):
                        raise SwitchboardError(
                            ErrorCode.PERMISSION_DENIED, f"This page needs the {min_role} role."
                        )
                    response = view(request, *args, **kwargs)
                    # Lazy template responses must render while the tenant context is still open.
                    if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                        response.render()
                    return response
                except SwitchboardError as error:
                    return error_response(request, error)

        wrapper.org_scoped = True  # checked for every organization URL by tests/web/test_views.py
        return wrapper

    return decorator


def session_for_write(request: HttpRequest, session_id):
    """The session, if the visitor may change it (the API's rule: its owner, or an admin); else an error."""
    from sessions_app.api.views import check_session_write
    from web.selectors import get_session

    session = get_session(session_id)
    if session is None:
        raise not_found(ErrorCode.SESSION_NOT_FOUND, "Session")
    check_session_write(request.access, session)
    return session


def error_response(request: HttpRequest, error: SwitchboardError) -> HttpResponse:
    """A catalogued error as the visitor should see it.

    htmx requests get a message in the page's flash area; a failed form post goes back where it came
    from with the message; anything else (not found, forbidden, a bad link) gets an error page.
    """
    if getattr(request, "htmx", False):
        response = render(request, "web/_flash.html", {"error": error}, status=error.status)
        response["HX-Retarget"] = "#flash"
        response["HX-Reswap"] = "innerHTML"
        return response
    if request.method == "POST" and error.status not in (403, 404):
        messages.error(request, error.message)
        return redirect(back_url(request))
    return render(request, "web/error.html", {"error": error}, status=error.status)


def to_sign_in(request: HttpRequest) -> HttpResponse:
    """A signed-out visitor goes to the sign-in page, and from there back to the page they were on.

    For a form post or an htmx request that is the page it was sent from, not the address it was sent
    to (which answers only a post, or only a fragment); and htmx loads the sign-in page whole
    (``HX-Redirect``) instead of swapping it into the fragment it asked for."""
    here = request.get_full_path()
    if request.method != "GET" or getattr(request, "htmx", False):
        here = _site_path(request, request.headers.get("HX-Current-URL")) or back_url(request)
    response = redirect_to_login(here)
    if getattr(request, "htmx", False):
        redirect_to = HttpResponse(status=204)
        redirect_to["HX-Redirect"] = response["Location"]
        return redirect_to
    return response


def _site_path(request: HttpRequest, url: str | None) -> str | None:
    """``url``'s path and query if it is a page of this site."""
    if url and url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        parsed = urlparse(url)
        return parsed.path + (f"?{parsed.query}" if parsed.query else "")
    return None


def back_url(request: HttpRequest, default: str | None = None) -> str:
    """Where a form post returns to: ``next``, the referring page of this site, or ``default``."""
    for candidate in (request.POST.get("next"), request.headers.get("referer")):
        path = _site_path(request, candidate)
        if path:
            return path
    if default:
        return default
    organization = getattr(request, "organization", None)
    return reverse("web:session-list", args=[organization.slug]) if organization else "/"
