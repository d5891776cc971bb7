"""Template filters of the web UI: safe Markdown, JSON for tool cards, tag chip colours, badges."""

from __future__ import annotations

from django import template
from django.utils.safestring import mark_safe

from web import rendering

register = template.Library()

RUNTIME_LABELS = {
    "idle": "Idle",
    "processing": "Processing",
    "streaming": "Streaming",
    "awaiting_approval": "Awaiting approval",
    "error": "Error",
}


@register.filter
def markdown(text: str) -> str:
    # render_markdown escapes raw HTML and sanitises the result with nh3: safe to mark as such.
    return mark_safe(rendering.render_markdown(text))  # noqa: S308


@register.filter
def pretty_json(value) -> str:
    return rendering.pretty_json(value)


@register.filter
def chip_background(color: str) -> str:
    return rendering.safe_color(color)


@register.filter
def chip_foreground(color: str) -> str:
    return rendering.text_color_for(color)


@register.filter
def runtime_label(state: str) -> str:
    return RUNTIME_LABELS.get(state, state)


@register.filter
def filesize(size: int) -> str:
    size = int(size or 0)
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


@register.simple_tag(takes_context=True)
def query_with(context, **changes) -> str:
    """The current query string with some parameters changed (pagination links keep the filters)."""
    params = context["request"].GET.copy()
    for key, value in changes.items():
        if value in (None, ""):
            params.pop(key, None)
        else:
            params[key] = value
    encoded = params.urlencode()
    return f"?{encoded}" if encoded else "?"


@register.filter
def has_role(access, role: str) -> bool:
    return bool(access) and access.has_role(role)


@register.simple_tag(takes_context=True)
def user_organizations(context) -> list:
    from core.access import organizations_for_user

    user = context["request"].user
    return list(organizations_for_user(user).order_by("name")) if user.is_authenticated else []


@register.simple_tag
def exec_sessions_enabled() -> bool:
    from django.conf import settings

    return bool(settings.ENABLE_EXEC_SESSIONS)


@register.filter
def bookmarked_in(pk, bookmarked_ids) -> bool:
    return str(pk) in (bookmarked_ids or ())
