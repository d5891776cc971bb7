"""Small helpers shared by the browser tests."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from django.db import connection

from core.tenancy import tenant_context
from sessions_app.models import Message
from sessions_app.services.lifecycle import session_create
from sessions_app.services.messages import message_append


def off_the_browser_thread(func, *args, **kwargs):
    """Run ``func`` on another thread: Playwright keeps an event loop on the test's thread, where the
    services' after-commit live pushes (``async_to_sync``) cannot run."""

    def call():
        try:
            return func(*args, **kwargs)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result()


def in_tenant(tenant, func, *args, **kwargs):
    """``func`` inside the tenant's context, off the browser's thread."""

    def scoped():
        with tenant_context(tenant.org):
            return func(*args, **kwargs)

    return off_the_browser_thread(scoped)


def make_session(tenant, *, agent=None, owner=None, name: str = "Chat", tags=None, config=None):
    return in_tenant(
        tenant,
        session_create,
        organization=tenant.org,
        agent=agent or tenant.agent,
        owner=owner or tenant.member,
        name=name,
        tags=tags,
        config=config,
    )


def add_messages(tenant, session, *pairs: tuple[str, str]) -> list[Message]:
    """Append finished messages (role, content) without running the agent."""

    def append_all():
        return [
            message_append(
                session, role=role, content=content, author=tenant.member if role == "user" else None
            )
            for role, content in pairs
        ]

    return in_tenant(tenant, append_all)


def send_message(page, tenant, session, text: str) -> None:
    """Open the session's chat page and send ``text`` from it."""
    from playwright.sync_api import expect

    page.goto(tenant.path(f"sessions/{session.pk}/"))
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Send").click()


def words(count: int, prefix: str = "w") -> str:
    return " ".join(f"{prefix}{i}" for i in range(1, count + 1))


STREAMING_TEXT = ".msg-assistant[data-status=streaming] .stream-text"
FINISHED_ASSISTANT = ".msg-assistant[data-status=complete] .markdown"
