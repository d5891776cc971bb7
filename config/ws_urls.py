"""Websocket routes. Group names are built by the consumers on the server, never taken from the URL."""

websocket_urlpatterns: list = []
