"""Attachments through the service with real small files, their download, and their text in context."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from core.errors import SwitchboardError
from core.tenancy import tenant_context
from history_app.api.serializers import AttachmentSerializer
from history_app.services.attachments import (
    attachment_context_text,
    attachments_add,
    attachments_validate,
    estimate_tokens,
)
from sessions_app.models import Attachment
from tests.history_app.builders import add_message
from tests.support.assertions import assert_error


def make_pdf(text: str) -> bytes:
    """A one-page PDF with ``text`` (correct xref offsets, so real readers accept it)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
        b"/Contents 5 0 R >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def make_png(width: int = 3, height: int = 2) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def upload(name: str, data: bytes, content_type: str = "application/octet-stream") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def message(world):
    return add_message(world.a, "see the files")


def test_text_csv_png_and_pdf_are_stored_and_analysed(world, message, media):
    files = [
        upload("notes.txt", b"first line\nsecond line\n", "text/plain"),
        upload("table.csv", b"name,qty\napple,3\npear,5\n", "text/csv"),
        upload("dot.png", make_png(), "image/png"),
        upload("report.pdf", make_pdf("Quarterly revenue grew"), "application/pdf"),
    ]
    with tenant_context(world.a.org):
        stored = attachments_add(message, files)
        rows = list(Attachment.objects.filter(message=message).order_by("created_at", "id"))
    assert [a.pk for a in stored] == [a.pk for a in rows]
    by_name = {a.filename: a for a in rows}
    assert {a.content_type for a in rows} == {"text/plain", "text/csv", "image/png", "application/pdf"}
    txt, csv_, png, pdf = (
        by_name["notes.txt"],
        by_name["table.csv"],
        by_name["dot.png"],
        by_name["report.pdf"],
    )
    assert txt.analysis["kind"] == "text" and txt.analysis["details"]["lines"] == 2
    assert txt.size == 23 and len(txt.sha256) == 64
    assert csv_.analysis["details"]["columns"] == ["name", "qty"]
    assert csv_.analysis["details"]["row_count"] == 2
    assert png.analysis["details"]["width"] == 3 and png.analysis["details"]["height"] == 2
    assert pdf.analysis["details"]["page_count"] == 1 and "Quarterly revenue grew" in pdf.analysis["text"]
    for attachment in rows:
        assert attachment.organization_id == world.a.org.pk
        assert attachment.file.name.startswith(f"attachments/{world.a.org.pk}/")
        with attachment.file.open("rb") as handle:
            assert len(handle.read()) == attachment.size


def test_the_same_file_is_stored_once(world, message):
    data = b"same bytes\n"
    with tenant_context(world.a.org):
        first = attachments_add(message, [upload("a.txt", data)])[0]
        second = attachments_add(add_message(world.a, "again"), [upload("b.txt", data)])[0]
    assert first.file.name == second.file.name and first.pk != second.pk


def test_too_large_is_message_too_long_and_nothing_is_saved(world, message, settings):
    settings.ATTACHMENT_MAX_BYTES = 10
    with tenant_context(world.a.org), pytest.raises(SwitchboardError) as caught:
        attachments_add(message, [upload("ok.txt", b"tiny"), upload("big.txt", b"x" * 11)])
    assert caught.value.code == "MESSAGE_TOO_LONG"
    assert caught.value.details == {"filename": "big.txt", "size": 11, "limit": 10}
    assert not Attachment.all_tenants_unsafe.filter(message=message).exists()


def test_types_outside_the_allow_list_are_invalid_message(world, message, settings):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("x.txt", "x")
    cases = [
        upload("archive.zip", archive.getvalue(), "application/zip"),
        upload("fake.png", b"not a png at all", "image/png"),
        upload("binary.bin", b"\x00\x01\x02", "application/octet-stream"),
    ]
    for bad in cases:
        with pytest.raises(SwitchboardError) as caught:
            attachments_validate([upload("fine.txt", b"fine"), bad])
        assert caught.value.code == "INVALID_MESSAGE", bad.name
        assert caught.value.details["filename"] == bad.name
    settings.ATTACHMENT_ALLOWED_TYPES = ["text/plain"]
    with pytest.raises(SwitchboardError) as caught:
        attachments_validate([upload("t.csv", b"a,b\n1,2\n")])
    assert caught.value.code == "INVALID_MESSAGE" and caught.value.details["allowed_types"] == ["text/plain"]
    assert not Attachment.all_tenants_unsafe.exists()


def test_too_many_files_and_empty_files(settings):
    settings.ATTACHMENT_MAX_FILES = 2
    with pytest.raises(SwitchboardError) as caught:
        attachments_validate([upload(f"{i}.txt", b"x") for i in range(3)])
    assert caught.value.code == "INVALID_MESSAGE"
    with pytest.raises(SwitchboardError) as caught:
        attachments_validate([upload("empty.txt", b"")])
    assert caught.value.code == "INVALID_MESSAGE"


def test_validate_returns_prepared_uploads_that_add_accepts(world, message):
    prepared = attachments_validate([upload("C:\\Users\\me\\notes.md", b"# Title\n")])
    assert prepared[0].filename == "notes.md" and prepared[0].content_type == "text/markdown"
    with tenant_context(world.a.org):
        (attachment,) = attachments_add(message, prepared)
    assert attachment.analysis["kind"] == "markdown"


def test_serializer_summarises_the_analysis(world, message):
    with tenant_context(world.a.org):
        (attachment,) = attachments_add(message, [upload("t.csv", b"a,b\n1,2\n")])
    data = AttachmentSerializer(attachment).data
    assert set(data) == {"id", "filename", "content_type", "size", "sha256", "analysis", "created_at"}
    assert data["analysis"]["kind"] == "csv" and data["analysis"]["summary"]
    assert "text" not in data["analysis"]


def test_download_and_list_over_the_api(world, client_for, message):
    with tenant_context(world.a.org):
        (attachment,) = attachments_add(message, [upload("notes.txt", b"hello file\n", "text/plain")])
    base = world.a.url(f"sessions/{world.a.session.pk}/messages/{message.pk}/attachments/")
    c = client_for(world.a.viewer)
    listed = c.get(base)
    assert listed.status_code == 200 and [a["id"] for a in listed.json()] == [str(attachment.pk)]
    response = c.get(f"{base}{attachment.pk}/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"hello file\n"
    assert response["Content-Type"] == "text/plain"
    assert response["Content-Disposition"] == 'attachment; filename="notes.txt"'


def test_attachments_are_not_found_across_organizations(world, client_for, message):
    with tenant_context(world.a.org):
        (attachment,) = attachments_add(message, [upload("secret.txt", b"acme secret\n")])
    b_message = add_message(world.b, "globex message")
    c = client_for(world.b.owner)
    # world.a's ids under world.b's URLs, one at a time, are all not found.
    paths = [
        f"sessions/{world.a.session.pk}/messages/{message.pk}/attachments/{attachment.pk}/",
        f"sessions/{world.b.session.pk}/messages/{message.pk}/attachments/{attachment.pk}/",
        f"sessions/{world.b.session.pk}/messages/{b_message.pk}/attachments/{attachment.pk}/",
    ]
    codes = ["SESSION_NOT_FOUND", "MESSAGE_NOT_FOUND", "NOT_FOUND"]
    for path, code in zip(paths, codes, strict=True):
        assert_error(c.get(world.b.url(path)), 404, code)
    # A message of another session of the same organization is not found either.
    assert_error(
        client_for(world.a.owner).get(
            world.a.url(
                f"sessions/{world.a.session.pk}/messages/{message.pk}/attachments/{world.a.session.pk}/"
            )
        ),
        404,
        "NOT_FOUND",
    )


def test_context_text_fits_the_budget(world, message):
    body = "word " * 400  # 2000 characters
    with tenant_context(world.a.org):
        attachments_add(message, [upload("a.txt", b"alpha text\n"), upload("b.txt", body.encode())])
        full = attachment_context_text(message.pk, 10_000)
        small = attachment_context_text(message.pk, 100)
        none = attachment_context_text(message.pk, 0)
        empty = attachment_context_text(add_message(world.a, "no files").pk, 1000)
    assert (
        full.startswith("[Attachment: a.txt (text/plain)") and "alpha text" in full and body.strip() in full
    )
    assert estimate_tokens(small) <= 100 and len(small) <= 400
    assert "alpha text" in small and "truncated" in small
    assert none == "" and empty == ""
    assert estimate_tokens("abcde") == 2
