"""Small builders shared by the history tests: sessions, messages, runs and tool calls with known values."""

from __future__ import annotations

from typing import Any

from core.tenancy import tenant_context
from sessions_app.models import Agent, Message, Run, Session, Tag
from sessions_app.services.lifecycle import session_create
from sessions_app.services.messages import message_append
from tools_app.models import ToolCall


def new_session(
    tenant, name: str = "", *, owner=None, agent: Agent | None = None, tags: list[str] = ()
) -> Session:
    with tenant_context(tenant.org):
        tag_objects = [Tag.objects.get_or_create(organization=tenant.org, name=t)[0] for t in tags]
        return session_create(
            organization=tenant.org,
            agent=agent or tenant.agent,
            owner=owner if owner is not None else tenant.member,
            name=name,
            tags=tag_objects or None,
        )


def add_message(
    tenant, content: str, *, session: Session | None = None, role: str = "user", **fields
) -> Message:
    with tenant_context(tenant.org):
        return message_append(session or tenant.session, role=role, content=content, **fields)


def add_run(tenant, session: Session | None = None, **fields: Any) -> Run:
    with tenant_context(tenant.org):
        return Run.objects.create(organization=tenant.org, session=session or tenant.session, **fields)


def add_tool_call(tenant, session: Session | None = None, **fields: Any) -> ToolCall:
    fields.setdefault("tool_name", "calculator")
    with tenant_context(tenant.org):
        return ToolCall.objects.create(organization=tenant.org, session=session or tenant.session, **fields)
