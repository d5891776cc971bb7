"""Attachments uploaded with a user message through the REST API (multipart)."""

from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile

from core.tenancy import tenant_context
from sessions_app.models import Attachment, Message
from tests.support.assertions import assert_error


def post_with_files(client, tenant, *files, content="Please look at this"):
    return client.post(
        tenant.url(f"sessions/{tenant.session.pk}/messages/"),
        {"content": content, "files": list(files)},
        format="multipart",
    )


def test_upload_is_stored_with_its_analysis(world, client_for):
    data = b"region,revenue\nEMEA,1.24\nAPAC,0.93\n"
    csv = SimpleUploadedFile("sales.csv", data, content_type="text/csv")
    response = post_with_files(client_for(world.a.member), world.a, csv)
    assert response.status_code == 201, response.content
    [attachment] = response.json()["message"]["attachments"]
    assert attachment["filename"] == "sales.csv" and attachment["size"] == len(data)
    with tenant_context(world.a.org):
        stored = Attachment.objects.get(pk=attachment["id"])
    assert stored.analysis["kind"] == "csv"
    assert stored.analysis["details"]["row_count"] == 2


def test_a_bad_file_rejects_the_whole_post_and_stores_nothing(world, client_for, settings):
    settings.ATTACHMENT_MAX_BYTES = 10
    big = SimpleUploadedFile("notes.txt", b"x" * 11, content_type="text/plain")
    assert_error(post_with_files(client_for(world.a.member), world.a, big), 413, "MESSAGE_TOO_LONG")
    settings.ATTACHMENT_MAX_BYTES = 10_000
    binary = SimpleUploadedFile(
        "tool.bin", b"\x7fELF\x02\x01\x01" + b"\x00" * 40, content_type="application/octet-stream"
    )
    assert_error(post_with_files(client_for(world.a.member), world.a, binary), 400, "INVALID_MESSAGE")
    with tenant_context(world.a.org):
        assert not Message.objects.filter(session=world.a.session).exists()
        assert not Attachment.objects.exists()
