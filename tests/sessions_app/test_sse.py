"""Server-sent events through the real ASGI application (``config.asgi.application``), read as a stream.

The application is driven with asgiref's ApplicationCommunicator, one ASGI message at a time, so the
endless response is read incrementally and the client can hang up like a browser does. Test bodies are
coroutines run by ``async_to_sync`` (database work in ``database_sync_to_async`` runs on the test's
thread, and its live pushes reach the in-memory channel layer the stream listens on).
"""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from channels.db import database_sync_to_async
from django.test import Client

from config.asgi import application
from core.events import event_envelope, event_publish
from core.tenancy import tenant_context
from sessions_app.models import SessionEvent

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 10  # seconds a message may take on a loaded CI machine; only reached when a test fails


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    # Users and API keys are hashed with the default slow hasher otherwise; nothing here tests hashing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


class SSEStream:
    """One GET on the ASGI app; ``start`` is the response start, ``next()`` the next SSE block."""

    def __init__(self, path: str, query: str = "", headers=()):
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": query.encode(),
            "headers": [(b"host", b"testserver"), *headers],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        self.communicator = ApplicationCommunicator(application, scope)
        self.buffer = b""
        self.more = True

    async def open(self) -> SSEStream:
        await self.communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
        self.start = await self.communicator.receive_output(WAIT)
        assert self.start["type"] == "http.response.start"
        self.headers = {k.decode().lower(): v.decode() for k, v in self.start["headers"]}
        return self

    @property
    def status(self) -> int:
        return self.start["status"]

    async def _read(self) -> None:
        message = await self.communicator.receive_output(WAIT)
        assert message["type"] == "http.response.body"
        self.buffer += message.get("body", b"")
        self.more = message.get("more_body", False)

    async def body(self) -> bytes:
        while self.more:
            await self._read()
        return self.buffer

    async def next(self) -> dict[str, str]:
        """The next block: its fields (``id``, ``event``, ``data``, ``retry``) or ``comment``."""
        while b"\n\n" not in self.buffer:
            assert self.more, "the stream ended"
            await self._read()
        block, self.buffer = self.buffer.split(b"\n\n", 1)
        fields: dict[str, str] = {}
        for line in block.decode().split("\n"):
            name, _, value = line.partition(":")
            fields[name or "comment"] = value[1:] if value.startswith(" ") else value
        return fields

    async def event(self) -> dict[str, str]:
        """The next event block, skipping the retry hint and heartbeats."""
        while True:
            block = await self.next()
            if "data" in block:
                return block

    async def events_through(self, seq: int) -> list[dict]:
        blocks = []
        while not blocks or int(blocks[-1]["id"]) != seq:
            blocks.append(await self.event())
        for block in blocks:
            envelope = json.loads(block["data"])
            assert block["id"] == str(envelope["seq"]) and block["event"] == envelope["type"]
        return [json.loads(b["data"]) for b in blocks]

    async def close(self) -> None:
        await self.communicator.send_input({"type": "http.disconnect"})
        await self.communicator.wait(WAIT)


def stream_path(tenant, session=None) -> str:
    return f"/api/v1/orgs/{tenant.slug}/sessions/{(session or tenant.session).pk}/stream"


def bearer(secret: str):
    return [(b"authorization", f"Bearer {secret}".encode())]


def cookie_headers(user, origin: str | None = None):
    client = Client()
    client.force_login(user)
    headers = [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return headers


def publish(tenant, count: int) -> list[int]:
    with tenant_context(tenant.org):
        return [event_publish(tenant.session, "session.updated", {"n": i}).seq for i in range(count)]


apublish = database_sync_to_async(publish)


def log_of(tenant) -> list[dict]:
    with tenant_context(tenant.org):
        return [
            event_envelope(e) for e in SessionEvent.objects.filter(session=tenant.session).order_by("seq")
        ]


def run_async(scenario):
    return async_to_sync(scenario)()


def assert_error(body: bytes, code: str) -> None:
    data = json.loads(body)
    assert set(data) == {"error"} and set(data["error"]) == {"code", "message", "details"}
    assert data["error"]["code"] == code


# --- streaming ----------------------------------------------------------------------------------------------


def test_ids_are_seqs_and_the_stream_matches_the_log(world, issue_key):
    secret = issue_key(world.a)
    publish(world.a, 5)
    log = log_of(world.a)

    async def scenario():
        stream = await SSEStream(stream_path(world.a), "after=0", bearer(secret)).open()
        assert stream.status == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"] == "no-cache"
        assert await stream.next() == {"retry": "2000"}
        events = await stream.events_through(log[-1]["seq"])
        assert events == log
        live = await apublish(world.a, 3)
        assert [e["seq"] for e in await stream.events_through(live[-1])] == live
        await stream.close()

    run_async(scenario)


def test_without_after_only_new_events_come(world, issue_key):
    secret = issue_key(world.a)
    publish(world.a, 3)

    async def scenario():
        stream = await SSEStream(stream_path(world.a), "", bearer(secret)).open()
        await stream.next()  # retry hint: the stream is set up
        live = await apublish(world.a, 4)
        events = await stream.events_through(live[-1])
        assert [e["seq"] for e in events] == live
        assert [e["data"]["n"] for e in events] == [0, 1, 2, 3]
        await stream.close()

    run_async(scenario)


def test_last_event_id_resumes_without_gap_or_duplicate(world, issue_key):
    secret = issue_key(world.a)

    async def scenario():
        stream = await SSEStream(stream_path(world.a), "after=0", bearer(secret)).open()
        first = await apublish(world.a, 6)
        seen = await stream.events_through(first[2])  # the client drops out part way
        await stream.close()
        missed = await apublish(world.a, 5)
        # Last-Event-ID (what a browser's EventSource sends) wins over a stale ?after=.
        resumed = SSEStream(
            stream_path(world.a), "after=1", bearer(secret) + [(b"last-event-id", str(first[2]).encode())]
        )
        await resumed.open()
        more = await apublish(world.a, 2)
        rest = await resumed.events_through(more[-1])
        await resumed.close()
        seqs = [e["seq"] for e in seen + rest]
        assert seqs == list(range(1, more[-1] + 1))
        assert missed[0] in seqs and len(seqs) == len(set(seqs))

    run_async(scenario)


def test_heartbeat_when_idle(world, issue_key, settings):
    settings.SSE_HEARTBEAT_SECONDS = 0.05
    secret = issue_key(world.a)

    async def scenario():
        stream = await SSEStream(stream_path(world.a), "", bearer(secret)).open()
        assert await stream.next() == {"retry": "2000"}
        assert await stream.next() == {"comment": "heartbeat"}
        seqs = await apublish(world.a, 1)
        assert [e["seq"] for e in await stream.events_through(seqs[0])] == seqs
        assert await stream.next() == {"comment": "heartbeat"}
        await stream.close()

    run_async(scenario)


# --- who may read ---------------------------------------------------------------------------------------


def test_authentication_is_required(world):
    async def scenario():
        stream = await SSEStream(stream_path(world.a)).open()
        assert stream.status == 401
        assert_error(await stream.body(), "AUTHENTICATION_REQUIRED")
        stream = await SSEStream(stream_path(world.a), "", bearer("sk_wrong")).open()
        assert stream.status == 401
        assert_error(await stream.body(), "AUTHENTICATION_FAILED")
        stream = await SSEStream(stream_path(world.a), "ticket=forged").open()
        assert stream.status == 401
        assert_error(await stream.body(), "AUTHENTICATION_FAILED")

    run_async(scenario)


def test_another_organizations_session_is_not_found(world, issue_key):
    key_b = issue_key(world.b)
    cookie_b = cookie_headers(world.b.owner)

    async def scenario():
        foreign = await SSEStream(stream_path(world.b, world.a.session), "", bearer(key_b)).open()
        missing = await SSEStream(
            f"/api/v1/orgs/{world.b.slug}/sessions/00000000-0000-0000-0000-000000000000/stream",
            "",
            bearer(key_b),
        ).open()
        assert foreign.status == missing.status == 404
        body = await foreign.body()
        assert body == await missing.body()
        assert_error(body, "SESSION_NOT_FOUND")
        by_cookie = await SSEStream(stream_path(world.b, world.a.session), "", cookie_b).open()
        assert by_cookie.status == 404
        assert_error(await by_cookie.body(), "SESSION_NOT_FOUND")
        other_org = await SSEStream(stream_path(world.a), "", bearer(key_b)).open()
        assert other_org.status == 404
        assert_error(await other_org.body(), "ORGANIZATION_NOT_FOUND")

    run_async(scenario)


def test_cookie_sign_in_and_origin(world):
    viewer = cookie_headers(world.a.viewer)  # a viewer may watch
    same_site = cookie_headers(world.a.viewer, "http://testserver")
    foreign = cookie_headers(world.a.viewer, "https://evil.example")

    async def scenario():
        for headers in (viewer, same_site):
            stream = await SSEStream(stream_path(world.a), "", headers).open()
            assert stream.status == 200
            await stream.next()
            seqs = await apublish(world.a, 1)
            assert [e["seq"] for e in await stream.events_through(seqs[0])] == seqs
            await stream.close()
        refused = await SSEStream(stream_path(world.a), "", foreign).open()
        assert refused.status == 403
        assert_error(await refused.body(), "PERMISSION_DENIED")

    run_async(scenario)


def test_ticket_is_single_use(world, issue_key, client_for):
    ticket = client_for(key=issue_key(world.a)).post(world.a.url("stream-ticket/")).json()["ticket"]

    async def scenario():
        stream = await SSEStream(stream_path(world.a), f"ticket={ticket}&after=0").open()
        assert stream.status == 200
        assert (await stream.event())["id"] == "1"
        await stream.close()
        again = await SSEStream(stream_path(world.a), f"ticket={ticket}").open()
        assert again.status == 401
        assert_error(await again.body(), "AUTHENTICATION_FAILED")

    run_async(scenario)


def test_bad_resume_points_are_validation_errors(world, issue_key):
    secret = issue_key(world.a)

    async def scenario():
        for query, headers in (
            ("after=soon", []),
            ("after=-3", []),
            ("", [(b"last-event-id", b"abc")]),
        ):
            stream = await SSEStream(stream_path(world.a), query, bearer(secret) + headers).open()
            assert stream.status == 400
            assert_error(await stream.body(), "VALIDATION_ERROR")

    run_async(scenario)


def test_a_key_revoked_while_streaming_ends_the_stream_with_the_reason(world, issue_key, settings):
    from core.api_keys import api_key_revoke
    from core.models import ApiKey

    settings.SSE_HEARTBEAT_SECONDS = 0.05
    settings.STREAM_ACCESS_RECHECK_SECONDS = 0.1
    secret = issue_key(world.a)

    def revoke():
        api_key_revoke(ApiKey.all_tenants_unsafe.get(prefix=secret.split("_")[1]))

    async def scenario():
        stream = await SSEStream(stream_path(world.a), "", bearer(secret)).open()
        assert await stream.next() == {"retry": "2000"}
        await database_sync_to_async(revoke)()
        block = await stream.event()
        assert block["event"] == "error"
        assert json.loads(block["data"])["error"]["code"] == "AUTHENTICATION_FAILED"
        await stream.body()  # the stream ends
        assert not stream.more

    run_async(scenario)
