"""Analyser for PDF documents (page count, metadata and text via pypdf)."""

from __future__ import annotations

import io
from typing import Any

from pypdf import PasswordType, PdfReader

from .base import Analysis, Analyzer, plural, registry
from .detection import PDF

# Text extraction costs time per page; beyond this many pages we stop even if the
# character cap has not been reached (a 5,000-page scan should not stall a worker).
MAX_PDF_PAGES = 500
_MAX_PAGE_ERRORS_LISTED = 10
_MAX_METADATA_CHARS = 300


@registry.register(PDF)
class PdfAnalyzer(Analyzer):
    """Extracts text page by page; broken or locked PDFs are reported via ``error``."""

    kind = "pdf"

    def analyze(self, data: bytes, filename: str, content_type: str) -> Analysis:
        # pypdf raises a wide and version-dependent range of exceptions on damaged
        # input (PdfReadError, ValueError, KeyError, ...), hence the broad catches:
        # a bad upload must yield an error result, never crash the request.
        try:
            reader = PdfReader(io.BytesIO(data), strict=False)
        except Exception as exc:
            return self.failure("PDF (unreadable)", f"Could not read PDF: {_describe(exc)}")

        details: dict[str, Any] = {"encrypted": bool(reader.is_encrypted)}
        if reader.is_encrypted:
            # Many PDFs are "encrypted" with an empty user password (owner-password
            # only, to restrict printing); those open fine with "".
            try:
                unlocked = reader.decrypt("") != PasswordType.NOT_DECRYPTED
            except Exception as exc:
                return self.failure(
                    "PDF (encrypted)",
                    f"PDF is encrypted and could not be opened: {_describe(exc)}",
                    **details,
                )
            if not unlocked:
                return self.failure("PDF (password-protected)", "PDF is password-protected.", **details)

        try:
            pages = reader.pages
            page_count = len(pages)
        except Exception as exc:
            return self.failure("PDF (unreadable)", f"Could not read PDF pages: {_describe(exc)}", **details)

        details["page_count"] = page_count
        details["metadata"] = _metadata(reader)

        parts: list[str] = []
        collected = 0
        page_errors: list[dict[str, Any]] = []
        pages_read = 0
        for index in range(min(page_count, MAX_PDF_PAGES)):
            if collected > self.max_text_chars:
                break  # Anything further would be truncated away anyway.
            pages_read += 1
            try:
                page_text = pages[index].extract_text() or ""
            except Exception as exc:
                page_errors.append({"page": index + 1, "error": _describe(exc)})
                continue
            parts.append(page_text)
            collected += len(page_text) + 2

        text = "\n\n".join(part for part in parts if part.strip())
        details["pages_read"] = pages_read
        details["page_errors"] = page_errors[:_MAX_PAGE_ERRORS_LISTED]
        details["page_error_count"] = len(page_errors)
        capped = self.cap_text(text, details)
        # Pages we never looked at mean the text is incomplete, not just capped.
        details["truncated"] = details["truncated"] or pages_read < page_count

        error = None
        if page_count and len(page_errors) == pages_read:
            error = "Could not extract text from any page of the PDF."
        if text.strip():
            summary = f"PDF, {plural(page_count, 'page')}, {plural(len(text), 'character')} of text"
        else:
            summary = f"PDF, {plural(page_count, 'page')}, no extractable text (scanned or image-only?)"
        return Analysis(kind=self.kind, summary=summary, details=details, text=capped, error=error)


def _describe(exc: Exception) -> str:
    """Short human description of a pypdf exception."""
    message = str(exc).strip().rstrip(".")
    return f"{message}." if message else f"{type(exc).__name__}."


def _metadata(reader: PdfReader) -> dict[str, str]:
    """Document info entries as plain strings (pypdf objects are not JSON-safe)."""
    try:
        info = reader.metadata
    except Exception:
        return {}
    if not info:
        return {}
    result: dict[str, str] = {}
    for key, name in (
        ("/Title", "title"),
        ("/Author", "author"),
        ("/Subject", "subject"),
        ("/Producer", "producer"),
    ):
        try:
            value = info.get(key)
        except Exception:
            continue
        if value:
            result[name] = str(value)[:_MAX_METADATA_CHARS]
    return result
