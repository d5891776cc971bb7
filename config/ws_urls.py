"""Websocket routes. Group names are built by the consumers on the server, never taken from the URL."""

from django.urls import path

from sessions_app.consumers import ApprovalsConsumer, SessionConsumer

websocket_urlpatterns = [
    path("ws/orgs/<slug:org_slug>/sessions/<str:session_id>/", SessionConsumer.as_asgi()),
    path("ws/orgs/<slug:org_slug>/approvals/", ApprovalsConsumer.as_asgi()),
]
