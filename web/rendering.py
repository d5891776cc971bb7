"""Safe rendering of message text: Markdown to HTML with raw HTML shown as text, then sanitised.

Two layers, because message content comes from people and models alike and is never trusted: the
Markdown converter does not pass raw HTML through (it is escaped and so shown as text), and the result
is cleaned by nh3 against an allowlist of tags and attributes, so a converter bug cannot become a script.
Images are left out: a message must not make every reader's browser fetch a remote URL.
"""

from __future__ import annotations

import json
import re
from typing import Any

import markdown
import nh3
from markdown.extensions.tables import TableExtension

ALLOWED_TAGS = {
    "p", "br", "hr", "em", "strong", "code", "pre", "blockquote", "ul", "ol", "li", "a",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "del",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}, "code": {"class"}}
URL_SCHEMES = {"http", "https", "mailto"}
HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


def _converter() -> markdown.Markdown:
    # Column alignment as the align attribute: style attributes are not allowed through the sanitiser.
    extensions = ["fenced_code", TableExtension(use_align_attribute=True), "sane_lists", "nl2br"]
    md = markdown.Markdown(extensions=extensions, output_format="html")
    # Raw HTML (block and inline) is escaped instead of passed through: it shows as the text it is.
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    return md


def render_markdown(text: str) -> str:
    """Sanitised HTML for a message's Markdown ``text``."""
    html = _converter().convert(text or "")
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
    )


def pretty_json(value: Any) -> str:
    """Indented JSON for tool arguments and results (escaped by the template like any text)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def safe_color(value: str, default: str = "#6b7280") -> str:
    """A ``#rrggbb`` colour fit for a style attribute, or the default."""
    return value if isinstance(value, str) and HEX_COLOR.match(value) else default


def text_color_for(background: str) -> str:
    """Black or white text, whichever contrasts more with the background (WCAG relative luminance)."""
    color = safe_color(background)
    channels = []
    for i in (1, 3, 5):
        c = int(color[i : i + 2], 16) / 255
        channels.append(c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4)
    luminance = 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]
    # Contrast with black is (L + 0.05) / 0.05, with white 1.05 / (L + 0.05); they cross at L ≈ 0.179.
    return "#000000" if luminance > 0.179 else "#ffffff"
