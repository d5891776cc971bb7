"""Tests for history_app.analysis using real, generated files (no Django needed)."""

from __future__ import annotations

import io
import json
import struct
import zlib

import pytest
from PIL import Image, features
from pypdf import PdfReader, PdfWriter

from history_app.analysis import (
    ALLOWED_CONTENT_TYPES,
    MAX_TEXT_CHARS,
    Analysis,
    AnalyzerRegistry,
    UnsupportedFileType,
    analyze,
    detect_content_type,
    registry,
)
from history_app.analysis.detection import EXTENSION_TYPES, FILENAME_TYPES
from history_app.analysis.image_analyzer import MAX_IMAGE_PIXELS
from history_app.analysis.text_analyzer import TextAnalyzer

# ---------------------------------------------------------------- file builders


def make_pdf(page_texts: list[str], title: str | None = None) -> bytes:
    """A minimal but valid PDF (correct xref offsets), one page per text; "" = blank page."""
    objects: list[bytes] = [b"", b""]  # 1: catalog, 2: page tree, filled in below
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")  # 3
    page_ids = []
    for text in page_texts:
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode() if text else b""
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        content_id = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % content_id
        )
        page_ids.append(len(objects))
    objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    kids = b" ".join(b"%d 0 R" % pid for pid in page_ids)
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(page_ids))
    info_ref = b""
    if title:
        objects.append(b"<< /Title (%s) >>" % title.encode())
        info_ref = b" /Info %d 0 R" % len(objects)
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        info_ref,
        xref_at,
    )
    return bytes(out)


def encrypted_pdf(user_password: str) -> bytes:
    writer = PdfWriter(clone_from=io.BytesIO(make_pdf(["Top secret"])))
    writer.encrypt(user_password=user_password, owner_password="owner-pw")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def image_bytes(fmt: str, size: tuple[int, int] = (32, 16), mode: str = "RGB", **save: object) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color=0).save(buffer, fmt, **save)
    return buffer.getvalue()


def png_with_declared_size(width: int, height: int) -> bytes:
    """A real 1×1 PNG whose IHDR is rewritten (with a valid CRC) to claim another size."""
    data = bytearray(image_bytes("PNG", (1, 1)))
    ihdr = data[12:29]  # chunk type + 13 bytes of header data
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


# ---------------------------------------------------------------- detection


def test_magic_bytes_beat_extension_and_declared_type():
    png = image_bytes("PNG")
    assert detect_content_type(png, "notes.txt", "text/plain") == "image/png"
    result = analyze(png, "notes.txt", "text/plain")
    assert result.kind == "image" and result.content_type == "image/png"
    assert detect_content_type(make_pdf(["x"]), "file.bin", "application/octet-stream") == "application/pdf"


def test_extension_beats_declared_and_aliases_are_normalised():
    assert detect_content_type(b"a,b\n1,2\n", "data.csv", "application/vnd.ms-excel") == "text/csv"
    assert detect_content_type(b"let x = 1", "app.ts", "video/mp2t") == "text/x-typescript"
    assert detect_content_type(b"x = 1", "upload", "application/x-python; charset=utf-8") == "text/x-python"
    assert detect_content_type(b"# hi", "C:\\docs\\README.MD", "") == "text/markdown"
    assert detect_content_type(b"FROM python", "Dockerfile", "") == "text/x-dockerfile"


@pytest.mark.parametrize(
    ("data", "filename", "declared", "expected_type"),
    [
        (b"PK\x03\x04\x14\x00\x00\x00" + b"\x00" * 40, "archive.txt", "text/plain", "application/zip"),
        (b"\x7fELF\x02\x01\x01" + b"\x00" * 40, "program.py", "text/x-python", "application/x-elf"),
        (b"hello", "setup.exe", "application/octet-stream", "application/octet-stream"),
        (b"hello", "noext", "", "application/octet-stream"),
        (b"hello", "doc.docx", "application/vnd.openxmlformats", "application/vnd.openxmlformats"),
    ],
)
def test_unsupported_types_are_refused(data, filename, declared, expected_type):
    with pytest.raises(UnsupportedFileType) as info:
        analyze(data, filename, declared)
    assert info.value.content_type == expected_type


def test_image_extension_without_image_signature_is_refused():
    with pytest.raises(UnsupportedFileType) as info:
        analyze(b"definitely not a png", "photo.png", "image/png")
    assert info.value.content_type == "image/png"
    assert "does not match" in str(info.value)


def test_every_known_extension_has_an_analyzer():
    for content_type in {*EXTENSION_TYPES.values(), *FILENAME_TYPES.values()}:
        assert content_type in ALLOWED_CONTENT_TYPES
    core = {"text/plain", "text/csv", "application/json", "application/pdf", "image/webp"}
    assert core <= ALLOWED_CONTENT_TYPES


def test_registry_refuses_conflicting_registration():
    local = AnalyzerRegistry()
    local.register("text/plain")(TextAnalyzer)
    with pytest.raises(ValueError):
        local.register("text/plain")(type("Other", (TextAnalyzer,), {}))
    with pytest.raises(UnsupportedFileType):
        local.get("text/nope")


# ---------------------------------------------------------------- text, markdown, code


def test_plain_text_stats():
    result = analyze("héllo wörld\nsecond line\nthird".encode(), "notes.txt", "text/plain")
    assert result.kind == "text" and result.error is None
    assert result.details["lines"] == 3 and result.details["words"] == 5
    assert result.details["characters"] == len("héllo wörld\nsecond line\nthird")
    assert result.text.startswith("héllo") and result.summary == "Text file, 3 lines, 5 words"


def test_utf8_bom_is_dropped():
    assert analyze(b"\xef\xbb\xbfhi", "a.txt", "").text == "hi"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"caf\xe9 au lait", "not valid UTF-8"),
        ("utf-16 text".encode("utf-16"), "UTF-16"),
        (b"abc\x00def", "NUL"),
    ],
)
def test_undecodable_text_reports_an_error(data, fragment):
    result = analyze(data, "bad.txt", "text/plain")
    assert result.kind == "text" and result.text == ""
    assert fragment in result.error


def test_long_text_is_truncated():
    data = b"word " * (MAX_TEXT_CHARS // 5 + 100)
    result = analyze(data, "big.log", "")
    assert len(result.text) == MAX_TEXT_CHARS
    assert result.details["truncated"] is True
    assert result.details["text_characters"] == len(data)
    assert result.details["words"] == MAX_TEXT_CHARS // 5 + 100  # stats cover the whole file


def test_markdown_headings_code_blocks_and_links():
    doc = (
        "# Switchboard\n\nIntro with a [link](https://example.com).\n\n"
        "```python\n# not a heading\nprint(1)\n```\n\n## Usage\n### Details ###\n"
    )
    result = analyze(doc.encode(), "README.md", "text/markdown")
    assert result.kind == "markdown"
    assert result.details["title"] == "Switchboard"
    assert result.details["heading_count"] == 3
    assert [h["title"] for h in result.details["headings"]] == ["Switchboard", "Usage", "Details"]
    assert result.details["code_blocks"] == 1 and result.details["links"] == 1


def test_python_source():
    source = b'"""Doc."""\n\n\ndef add(a, b):\n    return a + b\n'
    result = analyze(source, "calc.py", "text/x-python")
    assert result.kind == "code"
    assert result.details["language"] == "python"
    assert result.details["lines"] == 5 and result.details["blank_lines"] == 2
    assert result.summary == "Python source, 5 lines"
    assert result.text == source.decode()


@pytest.mark.parametrize(
    ("filename", "language"),
    [
        ("app.js", "javascript"),
        ("app.tsx", "typescript"),
        ("main.go", "go"),
        ("lib.rs", "rust"),
        ("Main.java", "java"),
        ("x.c", "c"),
        ("x.hpp", "cpp"),
        ("tool.rb", "ruby"),
        ("run.sh", "shell"),
        ("q.sql", "sql"),
        ("index.html", "html"),
        ("style.css", "css"),
        ("ci.yml", "yaml"),
        ("pyproject.toml", "toml"),
        ("Dockerfile", "dockerfile"),
    ],
)
def test_language_from_extension(filename, language):
    result = analyze(b"some code\n", filename, "application/octet-stream")
    assert result.kind == "code" and result.details["language"] == language


def test_language_falls_back_to_declared_type():
    result = analyze(b"#!/bin/sh\necho hi\n", "deploy", "application/x-sh")
    assert result.details["language"] == "shell"


# ---------------------------------------------------------------- CSV


def test_csv_comma_with_header_and_preview():
    rows = ["id,name,score"] + [f'{i},"Person, {i}",{i * 10}' for i in range(1, 9)]
    result = analyze("\r\n".join(rows).encode(), "scores.csv", "text/csv")
    details = result.details
    assert result.kind == "csv" and result.error is None
    assert details["delimiter"] == "," and details["has_header"] is True
    assert details["columns"] == ["id", "name", "score"]
    assert details["row_count"] == 8
    assert details["preview"] == [[str(i), f"Person, {i}", str(i * 10)] for i in range(1, 6)]
    assert details["consistent_columns"] is True
    assert result.summary == "CSV table, 3 columns × 8 rows (comma-separated)"


def test_csv_semicolon_and_all_text_header():
    data = b"city;country\nParis;France\nLima;Peru\n"
    details = analyze(data, "cities.csv", "").details
    assert details["delimiter"] == ";" and details["columns"] == ["city", "country"]
    assert details["row_count"] == 2


def test_tsv_and_headerless_numbers():
    details = analyze(b"1\t2\t3\n4\t5\t6\n", "m.tsv", "").details
    assert details["delimiter"] == "\t" and details["has_header"] is False
    assert details["columns"] == ["column_1", "column_2", "column_3"]
    assert details["row_count"] == 2 and details["preview"][0] == ["1", "2", "3"]


def test_csv_ragged_rows_and_edge_cases():
    assert analyze(b"a,b,c\n1,2,3\n4,5\n", "r.csv", "").details["consistent_columns"] is False
    empty = analyze(b"", "empty.csv", "text/csv")
    assert empty.error is None and empty.details["row_count"] == 0 and empty.details["column_count"] == 0
    single = analyze(b"name\nann\nbob\n", "one.csv", "").details
    assert single["column_count"] == 1 and single["row_count"] == 2


# ---------------------------------------------------------------- JSON


def test_json_object_and_array():
    obj = analyze(b'{"name": "x", "tags": [1, 2], "ok": true}', "c.json", "application/json")
    assert obj.kind == "json" and obj.details["valid"] is True
    assert obj.details["top_level_type"] == "object"
    assert obj.details["keys"] == ["name", "tags", "ok"]
    assert obj.summary == "JSON object with 3 keys: name, tags, ok"
    arr = analyze(b'[1, "a", null]', "a.json", "")
    assert arr.details["top_level_type"] == "array" and arr.details["length"] == 3
    assert arr.details["item_types"] == ["null", "number", "string"]
    assert analyze(b"true", "t.json", "").details["top_level_type"] == "boolean"


def test_invalid_json_reports_position():
    result = analyze(b'{\n  "a": 1,\n  "b": \n}', "broken.json", "application/json")
    assert result.details["valid"] is False
    assert result.details["error"]["line"] == 4 and result.details["error"]["column"] == 1
    assert result.summary.startswith("Invalid JSON: Expecting value at line 4")
    assert result.text  # still available so the model can help fix it


def test_deeply_nested_json_does_not_crash():
    result = analyze(b"[" * 200_000 + b"]" * 200_000, "deep.json", "")
    assert result.details["valid"] is False


# ---------------------------------------------------------------- PDF


def test_pdf_text_extraction_with_handwritten_pdf():
    data = make_pdf(["Hello Switchboard", ""], title="Quarterly report")
    assert "Hello Switchboard" in PdfReader(io.BytesIO(data)).pages[0].extract_text()  # sanity: PDF is valid
    result = analyze(data, "report.pdf", "application/pdf")
    assert result.kind == "pdf" and result.error is None
    assert result.details["page_count"] == 2
    assert result.details["metadata"]["title"] == "Quarterly report"
    assert "Hello Switchboard" in result.text
    assert result.summary.startswith("PDF, 2 pages,")


def test_pdf_blank_pages_written_with_pypdf():
    writer = PdfWriter()
    for _ in range(3):
        writer.add_blank_page(width=200, height=200)
    buffer = io.BytesIO()
    writer.write(buffer)
    result = analyze(buffer.getvalue(), "blank.pdf", "")
    assert result.error is None and result.details["page_count"] == 3
    assert result.text == "" and "no extractable text" in result.summary


@pytest.mark.parametrize(
    "data",
    [b"%PDF-1.7\n", b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog", b"%PDF-" + bytes(range(256)) * 4],
)
def test_broken_pdf_gives_error_not_exception(data):
    result = analyze(data, "broken.pdf", "application/pdf")
    assert result.kind == "pdf" and result.error and result.text == ""


def test_password_protected_pdf():
    result = analyze(encrypted_pdf("s3cret"), "locked.pdf", "application/pdf")
    assert result.error == "PDF is password-protected." and result.details["encrypted"] is True


def test_pdf_with_empty_user_password_opens():
    result = analyze(encrypted_pdf(""), "restricted.pdf", "application/pdf")
    assert result.error is None and "Top secret" in result.text


# ---------------------------------------------------------------- images


@pytest.mark.parametrize(
    ("fmt", "mode", "content_type"),
    [("PNG", "RGBA", "image/png"), ("JPEG", "RGB", "image/jpeg"), ("GIF", "P", "image/gif")],
)
def test_images(fmt, mode, content_type):
    result = analyze(image_bytes(fmt, (40, 30), mode), "pic", "application/octet-stream")
    assert result.kind == "image" and result.content_type == content_type and result.error is None
    assert result.details["format"] == fmt
    assert (result.details["width"], result.details["height"], result.details["mode"]) == (40, 30, mode)
    assert result.text == "" and result.summary == f"{fmt} image, 40×30 px, {mode}"


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")
def test_webp_image():
    result = analyze(image_bytes("WEBP", (8, 8)), "x.webp", "image/webp")
    assert result.details["format"] == "WEBP" and result.details["width"] == 8


def test_animated_gif():
    frames = [Image.new("RGB", (10, 10), color=(80 * i, 0, 0)) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    details = analyze(buffer.getvalue(), "anim.gif", "").details
    assert details["animated"] is True and details["frames"] == 3


def test_oversized_images_are_refused_without_decoding():
    side = int(MAX_IMAGE_PIXELS**0.5) + 10
    result = analyze(png_with_declared_size(side, side), "big.png", "")
    assert result.error and "pixel limit" in result.error
    bomb = analyze(png_with_declared_size(100_000, 100_000), "bomb.png", "")
    assert bomb.error and bomb.kind == "image"


def test_truncated_image_gives_error():
    data = image_bytes("PNG", (64, 64))
    result = analyze(data[:40], "cut.png", "image/png")
    assert result.kind == "image" and result.error


# ---------------------------------------------------------------- API contract


def test_to_dict_is_json_serialisable_for_every_kind():
    samples = [
        (b"text", "a.txt"),
        (b"# T", "a.md"),
        (b"x=1", "a.py"),
        (b"a,b\n1,2", "a.csv"),
        (b"{}", "a.json"),
        (make_pdf(["Hi"]), "a.pdf"),
        (image_bytes("PNG"), "a.png"),
    ]
    kinds = set()
    for data, name in samples:
        result = analyze(data, name, "")
        as_dict = json.loads(json.dumps(result.to_dict()))
        assert set(as_dict) >= {"kind", "summary", "details", "text", "error"}
        kinds.add(result.kind)
    assert kinds == {"text", "markdown", "code", "csv", "json", "pdf", "image"}


def test_unexpected_analyzer_crash_becomes_error(monkeypatch):
    def explode(self, data, filename, content_type):
        raise RuntimeError("boom")

    monkeypatch.setattr(registry.get("text/plain"), "analyze", explode)
    result = analyze(b"hi", "a.txt", "text/plain")
    assert isinstance(result, Analysis)
    assert result.error == "Analysis failed: RuntimeError." and result.kind == "text"
