"""Analyser for delimiter-separated tables (CSV / TSV)."""

from __future__ import annotations

import csv
import io
from typing import Any

from .base import Analysis, Analyzer, TextDecodeError, decode_text, plural, registry
from .detection import CSV, TSV

PREVIEW_ROWS = 5
_SNIFF_BYTES = 64 * 1024  # Sniffer is regex-heavy; a sample is enough and keeps it fast.
_CANDIDATE_DELIMITERS = ",;\t|"
_MAX_CELL_CHARS = 200  # Keeps the preview small even when a cell holds a whole document.
_MAX_COLUMNS_LISTED = 200

_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


def _is_number(value: str) -> bool:
    try:
        float(value.replace(",", ""))
    except ValueError:
        return False
    return True


def _looks_like_header(first_row: list[str]) -> bool:
    """Cheap fallback to ``Sniffer.has_header``, which misses all-text tables.

    A header is a row of distinct, non-empty, non-numeric labels.
    """
    cells = [cell.strip() for cell in first_row]
    return (
        bool(cells)
        and all(cells)
        and not any(_is_number(cell) for cell in cells)
        and len(set(cells)) == len(cells)
    )


@registry.register(CSV, TSV)
class CsvAnalyzer(Analyzer):
    """Sniffs the delimiter and reports columns, row count and a short preview."""

    kind = "csv"

    def analyze(self, data: bytes, filename: str, content_type: str) -> Analysis:
        try:
            text = decode_text(data)
        except TextDecodeError as exc:
            return self.failure("CSV file (unreadable)", str(exc))

        sample = text[:_SNIFF_BYTES]
        delimiter = self._sniff_delimiter(sample, default="\t" if content_type == TSV else ",")
        try:
            rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
            first_row: list[str] | None = next(rows, None)
            has_header = first_row is not None and self._has_header(sample, first_row)
            preview: list[list[str]] = []
            row_count = 0
            widths: set[int] = set()
            if first_row is not None:
                widths.add(len(first_row))
                if not has_header:
                    preview.append(first_row)
                    row_count = 1
            for row in rows:
                if not row:
                    continue  # Blank lines are not records.
                row_count += 1
                widths.add(len(row))
                if len(preview) < PREVIEW_ROWS:
                    preview.append(row)
        except csv.Error as exc:
            return self.failure("CSV file (malformed)", f"Could not parse CSV: {exc}.", delimiter=delimiter)

        if first_row is None:
            column_count = 0
        elif has_header:
            column_count = len(first_row)
        else:
            column_count = max(widths, default=0)
        columns = first_row if has_header and first_row else [f"column_{i + 1}" for i in range(column_count)]
        details: dict[str, Any] = {
            "delimiter": delimiter,
            "has_header": has_header,
            "columns": [self._clip(name) for name in columns[:_MAX_COLUMNS_LISTED]],
            "column_count": column_count,
            "row_count": row_count,
            "preview": [[self._clip(cell) for cell in row[:_MAX_COLUMNS_LISTED]] for row in preview],
            # Ragged rows usually mean a wrong delimiter or unquoted separators in data.
            "consistent_columns": len(widths) <= 1,
        }
        capped = self.cap_text(text, details)
        delimiter_name = _DELIMITER_NAMES.get(delimiter, repr(delimiter))
        summary = (
            f"CSV table, {plural(column_count, 'column')} × {plural(row_count, 'row')} "
            f"({delimiter_name}-separated)"
        )
        return Analysis(kind=self.kind, summary=summary, details=details, text=capped)

    @staticmethod
    def _sniff_delimiter(sample: str, default: str) -> str:
        try:
            return csv.Sniffer().sniff(sample, delimiters=_CANDIDATE_DELIMITERS).delimiter
        except csv.Error:
            # Single-column files (no delimiter at all) land here; that is not an error.
            return default

    @staticmethod
    def _has_header(sample: str, first_row: list[str]) -> bool:
        try:
            sniffed = csv.Sniffer().has_header(sample)
        except csv.Error:
            sniffed = False
        return sniffed or _looks_like_header(first_row)

    @staticmethod
    def _clip(value: str) -> str:
        return value if len(value) <= _MAX_CELL_CHARS else value[:_MAX_CELL_CHARS] + "…"
