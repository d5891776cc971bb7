"""Analysers for plain text, Markdown and source code."""

from __future__ import annotations

import re
from typing import Any

from .base import Analysis, Analyzer, TextDecodeError, decode_text, plural, registry, text_stats
from .detection import CODE_CONTENT_TYPES, MARKDOWN, TEXT, language_for

# Headings and fences are matched line by line; only ATX headings ("# Title")
# are counted because setext headings need look-behind at the previous line.
_HEADING_RE = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_LINK_RE = re.compile(r"!?\[[^\]\n]*\]\([^)\n]*\)")
_MAX_LISTED_HEADINGS = 20

# Human names for summaries; the machine-readable id stays in details["language"].
_LANGUAGE_LABELS = {
    "cpp": "C++",
    "csharp": "C#",
    "javascript": "JavaScript",
    "typescript": "TypeScript",
    "php": "PHP",
    "sql": "SQL",
    "html": "HTML",
    "css": "CSS",
    "xml": "XML",
    "yaml": "YAML",
    "toml": "TOML",
    "ini": "INI",
    "json": "JSON",
}


class _TextFamilyAnalyzer(Analyzer):
    """Shared decode-count-cap pipeline; subclasses add kind-specific details."""

    label = "Text file"

    def analyze(self, data: bytes, filename: str, content_type: str) -> Analysis:
        try:
            text = decode_text(data)
        except TextDecodeError as exc:
            return self.failure(f"{self.label} (unreadable)", str(exc))
        details: dict[str, Any] = dict(text_stats(text))
        details.update(self.extra_details(text, filename, content_type))
        capped = self.cap_text(text, details)
        return Analysis(kind=self.kind, summary=self.summarize(details), details=details, text=capped)

    def extra_details(self, text: str, filename: str, content_type: str) -> dict[str, Any]:
        """Kind-specific details; none for plain text."""
        return {}

    def summarize(self, details: dict[str, Any]) -> str:
        """One-line summary built from ``details``."""
        return f"{self.label}, {plural(details['lines'], 'line')}, {plural(details['words'], 'word')}"


@registry.register(TEXT)
class TextAnalyzer(_TextFamilyAnalyzer):
    """Plain UTF-8 text."""

    kind = "text"


@registry.register(MARKDOWN)
class MarkdownAnalyzer(_TextFamilyAnalyzer):
    """Markdown documents: adds headings, fenced code blocks and link counts."""

    kind = "markdown"
    label = "Markdown document"

    def extra_details(self, text: str, filename: str, content_type: str) -> dict[str, Any]:
        headings: list[dict[str, Any]] = []
        heading_count = 0
        code_blocks = 0
        fence: str | None = None
        for line in text.splitlines():
            fence_match = _FENCE_RE.match(line)
            if fence is not None:
                # A fence closes only with the same character, at least as long.
                if (
                    fence_match
                    and fence_match.group(1)[0] == fence[0]
                    and len(fence_match.group(1)) >= len(fence)
                ):
                    fence = None
                continue
            if fence_match:
                fence = fence_match.group(1)
                code_blocks += 1
                continue
            heading = _HEADING_RE.match(line)
            if heading:
                heading_count += 1
                if len(headings) < _MAX_LISTED_HEADINGS:
                    headings.append({"level": len(heading.group(1)), "title": heading.group(2)[:200]})
        title = next((h["title"] for h in headings if h["level"] == 1), None)
        return {
            "title": title,
            "heading_count": heading_count,
            "headings": headings,
            "code_blocks": code_blocks,
            "links": len(_LINK_RE.findall(text)),
        }

    def summarize(self, details: dict[str, Any]) -> str:
        return (
            f"{self.label}, {plural(details['lines'], 'line')}, {plural(details['heading_count'], 'heading')}"
        )


@registry.register(*sorted(CODE_CONTENT_TYPES))
class CodeAnalyzer(_TextFamilyAnalyzer):
    """Source code: adds the language (from the extension) and line shape stats."""

    kind = "code"
    label = "Source file"

    def extra_details(self, text: str, filename: str, content_type: str) -> dict[str, Any]:
        lines = text.splitlines()
        return {
            "language": language_for(filename, content_type),
            "blank_lines": sum(1 for line in lines if not line.strip()),
            "max_line_length": max((len(line) for line in lines), default=0),
        }

    def summarize(self, details: dict[str, Any]) -> str:
        language = details.get("language")
        label = f"{_LANGUAGE_LABELS.get(language, language.capitalize())} source" if language else self.label
        return f"{label}, {plural(details['lines'], 'line')}"
