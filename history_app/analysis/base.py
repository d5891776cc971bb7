"""Core types shared by every attachment analyser.

Defines the :class:`Analysis` result, the :class:`Analyzer` strategy interface,
the content-type :class:`AnalyzerRegistry` and small text helpers.  Nothing here
imports Django so the package can be used (and tested) on its own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, TypeVar

# Upper bound on the text handed to the model; large files are cut here so one
# attachment cannot blow the context window (or memory) on its own.
MAX_TEXT_CHARS = 200_000


class UnsupportedFileType(ValueError):
    """Raised when a file's type is unknown, disallowed or contradicts its content."""

    def __init__(self, content_type: str, reason: str | None = None) -> None:
        self.content_type = content_type or "application/octet-stream"
        self.reason = reason
        message = f"Unsupported file type: {self.content_type}"
        if reason:
            message = f"{message} ({reason})"
        super().__init__(message)


class TextDecodeError(ValueError):
    """Raised by :func:`decode_text` with a message suitable for end users."""


@dataclass
class Analysis:
    """The outcome of analysing one attachment.

    ``error`` is set when the file could not be (fully) read, e.g. an encrypted
    PDF or invalid UTF-8; ``summary`` is then still a readable one-liner.
    ``text`` is what may be placed into the model's context ("" for images).
    """

    kind: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    error: str | None = None
    content_type: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict of all fields."""
        return asdict(self)


class Analyzer(ABC):
    """Strategy interface: one subclass per family of file types."""

    #: The ``Analysis.kind`` this analyser produces (text, markdown, code, ...).
    kind: ClassVar[str]

    def __init__(self, max_text_chars: int = MAX_TEXT_CHARS) -> None:
        self.max_text_chars = max_text_chars

    @abstractmethod
    def analyze(self, data: bytes, filename: str, content_type: str) -> Analysis:
        """Analyse ``data``; report problems through ``Analysis.error``, not exceptions."""

    def failure(self, summary: str, error: str, **details: Any) -> Analysis:
        """Build an error result of this analyser's kind."""
        return Analysis(kind=self.kind, summary=summary, details=dict(details), error=error)

    def cap_text(self, text: str, details: dict[str, Any]) -> str:
        """Truncate ``text`` to ``max_text_chars`` and record that in ``details``."""
        details["text_characters"] = len(text)
        details["truncated"] = len(text) > self.max_text_chars
        return text[: self.max_text_chars]


A = TypeVar("A", bound=type[Analyzer])


class AnalyzerRegistry:
    """Maps canonical content types to the analyser class that handles them."""

    def __init__(self) -> None:
        self._by_type: dict[str, type[Analyzer]] = {}

    def register(self, *content_types: str) -> Callable[[A], A]:
        """Class decorator registering an analyser for ``content_types``."""

        def decorator(cls: A) -> A:
            for content_type in content_types:
                existing = self._by_type.get(content_type)
                # Two analysers silently fighting over a type would be a bug that is
                # hard to spot, so refuse it at import time.
                if existing is not None and existing is not cls:
                    raise ValueError(f"{content_type} already handled by {existing.__name__}")
                self._by_type[content_type] = cls
            return cls

        return decorator

    def supports(self, content_type: str) -> bool:
        """Whether an analyser exists for ``content_type``."""
        return content_type in self._by_type

    def get(self, content_type: str) -> type[Analyzer]:
        """Return the analyser class for ``content_type`` or raise UnsupportedFileType."""
        try:
            return self._by_type[content_type]
        except KeyError:
            raise UnsupportedFileType(content_type) from None

    def content_types(self) -> frozenset[str]:
        """All content types that have an analyser."""
        return frozenset(self._by_type)


#: The process-wide registry the analyser modules register themselves into.
registry = AnalyzerRegistry()


def decode_text(data: bytes) -> str:
    """Decode ``data`` as UTF-8 (a leading BOM is dropped).

    Raises :class:`TextDecodeError` with a human explanation otherwise.
    """
    # UTF-16/32 files are common from Windows tools; say so rather than just
    # reporting an invalid byte at position 0.
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise TextDecodeError("File is UTF-16/UTF-32 encoded; please convert it to UTF-8.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TextDecodeError(
            f"File is not valid UTF-8 text (invalid byte 0x{data[exc.start]:02x} at offset {exc.start})."
        ) from None
    if "\x00" in text:
        raise TextDecodeError("File looks binary (it contains NUL bytes), not text.")
    return text


def count_lines(text: str) -> int:
    """Count lines the way editors do: a final line without newline still counts."""
    if not text:
        return 0
    return text.count("\n") + (0 if text.endswith("\n") else 1)


def text_stats(text: str) -> dict[str, int]:
    """Basic size statistics for a decoded text."""
    return {"lines": count_lines(text), "characters": len(text), "words": len(text.split())}


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """``plural(3, "line")`` -> ``"3 lines"`` with thousands separators."""
    word = noun if count == 1 else (plural_noun or noun + "s")
    return f"{count:,} {word}"
