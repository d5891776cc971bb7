"""ASGI entry point: HTTP through Django, websockets through Channels (served by Daphne).

Websocket origins are checked by the consumers themselves (core.stream_auth): a browser's cookie
sign-in needs this site's Origin, while programs with an API key or ticket may send none.
"""

import os

import django
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)  # what django.core.asgi.get_asgi_application does before its handler


class SyncChainASGIHandler(ASGIHandler):
    """Django's ASGI handler with the middleware chain run synchronously, in one thread hop.

    Django's own middleware classes are written for both modes; run asynchronously, each one moves its
    request and its response to the request's thread and back (two hops per middleware, about twenty
    per request). Here the whole chain runs on that thread at once. An async view (the SSE stream)
    still runs on the event loop and its response still streams there: the thread is held only while
    the view returns its response.
    """

    def load_middleware(self, is_async=False):
        super().load_middleware(is_async=False)

    async def get_response_async(self, request):
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs the app registry loaded)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from config.ws_urls import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": SyncChainASGIHandler(),
        "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
    }
)
