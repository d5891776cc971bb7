"""Attachment analysis: detect a file's type and describe it for the chat model.

Usage::

    from history_app.analysis import analyze, UnsupportedFileType

    try:
        result = analyze(data, "report.pdf", "application/pdf")
    except UnsupportedFileType as exc:
        ...  # reject the upload: exc.content_type says what it was
    result.summary, result.text, result.to_dict()

Pure Python (no Django) so it can run anywhere, including background workers.
"""

from __future__ import annotations

import logging

# The analyser modules register themselves with ``registry`` on import; these
# imports must happen before ALLOWED_CONTENT_TYPES is computed below.
from . import csv_analyzer, image_analyzer, json_analyzer, pdf_analyzer, text_analyzer  # noqa: F401
from .base import (
    MAX_TEXT_CHARS,
    Analysis,
    Analyzer,
    AnalyzerRegistry,
    UnsupportedFileType,
    registry,
)
from .detection import detect_content_type, language_for, normalize_content_type

logger = logging.getLogger(__name__)

#: Every canonical content type that :func:`analyze` accepts.
ALLOWED_CONTENT_TYPES: frozenset[str] = registry.content_types()

__all__ = [
    "ALLOWED_CONTENT_TYPES",
    "MAX_TEXT_CHARS",
    "Analysis",
    "Analyzer",
    "AnalyzerRegistry",
    "UnsupportedFileType",
    "analyze",
    "detect_content_type",
    "language_for",
    "normalize_content_type",
    "registry",
]


def analyze(data: bytes, filename: str, content_type: str) -> Analysis:
    """Detect the type of ``data`` and run the matching analyser.

    Raises :class:`UnsupportedFileType` if the type is unknown or not allowed.
    Any other problem (broken PDF, invalid UTF-8, ...) is reported through
    ``Analysis.error``; this function does not raise for bad file contents.
    """
    data = bytes(data)
    detected = detect_content_type(data, filename, content_type)
    analyzer = registry.get(detected)()
    try:
        result = analyzer.analyze(data, filename, detected)
    except Exception as exc:
        # Last-resort net: analysers handle expected failures themselves, but an
        # unexpected library error on hostile input must not break the upload.
        logger.exception("Analyser %s failed on %r", type(analyzer).__name__, filename)
        result = analyzer.failure(
            f"{detected} file (analysis failed)", f"Analysis failed: {type(exc).__name__}."
        )
    result.content_type = detected
    return result
