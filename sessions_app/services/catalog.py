"""Agents, tags and templates: the organization's catalogue.

Tags and templates come with system presets (no organization) shown to every organization. Editing a
preset makes an organization copy that shadows it from then on; the preset itself never changes, and the
organization's sessions that carried the preset tag carry the copy instead.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from core.errors import ErrorCode, SwitchboardError
from core.models import Organization
from sessions_app.models import Agent, ProviderCredential, Session, SessionTemplate, Tag


def _conflict(what: str, name: str) -> SwitchboardError:
    return SwitchboardError(ErrorCode.CONFLICT, f"A {what} named {name!r} already exists.", {"name": name})


def agent_create(*, organization: Organization, **fields: Any) -> Agent:
    try:
        with transaction.atomic():
            return Agent.objects.create(organization=organization, **fields)
    except IntegrityError:
        raise _conflict("agent", fields.get("slug", "")) from None


def agent_update(agent: Agent, **fields: Any) -> Agent:
    for name, value in fields.items():
        setattr(agent, name, value)
    try:
        with transaction.atomic():
            agent.save()
    except IntegrityError:
        raise _conflict("agent", agent.slug) from None
    return agent


def agent_delete(agent: Agent) -> None:
    """Delete an agent no session uses; one in use is deactivated instead (sessions keep their history)."""
    if Session.objects.filter(agent=agent).exists():
        agent.is_active = False
        agent.save(update_fields=["is_active", "updated_at"])
    else:
        agent.delete()


def tag_create(*, organization: Organization, name: str, color: str) -> Tag:
    if Tag.objects.filter(name=name, organization=organization).exists():
        raise _conflict("tag", name)
    try:
        with transaction.atomic():
            return Tag.objects.create(organization=organization, name=name, color=color)
    except IntegrityError:
        raise _conflict("tag", name) from None


def tag_update(tag: Tag, *, organization: Organization, **fields: Any) -> Tag:
    """Change a tag; a system preset is copied into the organization first (copy on write).

    The copy is saved once, with the changes, so a name taken in the organization is a ``CONFLICT``.
    """
    with transaction.atomic():
        preset = None
        if tag.organization_id is None:
            preset = tag
            tag = Tag.objects.filter(organization=organization, source=preset).first() or Tag(
                organization=organization,
                name=preset.name,
                color=preset.color,
                source=preset,
                is_system=False,
            )
        for name, value in fields.items():
            setattr(tag, name, value)
        try:
            with transaction.atomic():
                tag.save()
        except IntegrityError:
            raise _conflict("tag", tag.name) from None
        if preset is not None:
            for session in Session.objects.filter(tags=preset):
                session.tags.remove(preset)
                session.tags.add(tag)
    return tag


def tag_delete(tag: Tag) -> None:
    if tag.organization_id is None:
        raise SwitchboardError(ErrorCode.PERMISSION_DENIED, "System tags cannot be deleted.")
    tag.delete()


def template_create(*, organization: Organization, **fields: Any) -> SessionTemplate:
    try:
        with transaction.atomic():
            return SessionTemplate.objects.create(organization=organization, **fields)
    except IntegrityError:
        raise _conflict("template", fields.get("name", "")) from None


def template_update(
    template: SessionTemplate, *, organization: Organization, **fields: Any
) -> SessionTemplate:
    """Change a template; a system template is copied into the organization first (copy on write).

    The copy is saved once, with the changes, so a name taken in the organization is a ``CONFLICT``.
    """
    with transaction.atomic():
        if template.organization_id is None:
            preset = template
            template = SessionTemplate.objects.filter(
                organization=organization, source=preset
            ).first() or SessionTemplate(
                organization=organization,
                name=preset.name,
                description=preset.description,
                agent=None,
                config=preset.config,
                tags=preset.tags,
                source=preset,
            )
        for name, value in fields.items():
            setattr(template, name, value)
        try:
            with transaction.atomic():
                template.save()
        except IntegrityError:
            raise _conflict("template", template.name) from None
    return template


def template_delete(template: SessionTemplate) -> None:
    if template.organization_id is None:
        raise SwitchboardError(ErrorCode.PERMISSION_DENIED, "System templates cannot be deleted.")
    template.delete()


def provider_credential_save(
    credential: ProviderCredential | None,
    *,
    organization: Organization,
    api_key: str | None = None,
    **fields: Any,
) -> ProviderCredential:
    """Create or change a provider credential; the API key is encrypted before it is stored."""
    from core.crypto import encrypt

    credential = credential or ProviderCredential(organization=organization)
    for name, value in fields.items():
        setattr(credential, name, value)
    if api_key is not None:
        credential.api_key_encrypted = encrypt(api_key)
    try:
        with transaction.atomic():
            if credential.is_default:
                ProviderCredential.objects.exclude(pk=credential.pk).update(is_default=False)
            credential.save()
    except IntegrityError:
        raise _conflict("provider", credential.name) from None
    return credential
