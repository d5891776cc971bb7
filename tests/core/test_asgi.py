"""The HTTP side of ``config.asgi.application``: Django's middleware chain runs synchronously.

Django's middleware classes work in both modes; run asynchronously, each moves its request and its
response to the request's thread and back (``MiddlewareMixin.__acall__``). The application runs the
whole chain in one hop instead. Async views (the SSE stream, tests/sessions_app/test_sse.py) still run
on the event loop through the same application.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync
from channels.testing import HttpCommunicator
from django.utils.deprecation import MiddlewareMixin

from config.asgi import SyncChainASGIHandler, application


def _http_handler() -> SyncChainASGIHandler:
    return application.application_mapping["http"]


def test_the_http_application_has_a_synchronous_middleware_chain():
    handler = _http_handler()
    assert isinstance(handler, SyncChainASGIHandler)
    assert not asyncio.iscoroutinefunction(handler._middleware_chain)


@pytest.mark.django_db(transaction=True)
def test_requests_pass_the_middleware_without_a_hop_per_middleware(monkeypatch):
    async_calls = []
    original = MiddlewareMixin.__acall__

    async def recording(self, request):
        async_calls.append(type(self).__name__)
        return await original(self, request)

    monkeypatch.setattr(MiddlewareMixin, "__acall__", recording)

    async def get(path: str):
        communicator = HttpCommunicator(application, "GET", path, headers=[(b"host", b"localhost")])
        return await communicator.get_response(timeout=10)

    health = async_to_sync(get)("/healthz")
    assert health["status"] == 200
    # The API answers through the same chain: no credentials, a catalogue error (and the clickjacking
    # middleware's header is there, so the chain did run).
    api = async_to_sync(get)("/api/v1/me/")
    assert api["status"] in (401, 403)
    assert json.loads(api["body"])["error"]["code"]
    assert (b"X-Frame-Options", b"DENY") in api["headers"]
    assert async_calls == []
