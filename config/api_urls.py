"""Every REST endpoint. Organization endpoints live under ``/api/v1/orgs/<org_slug>/``."""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from core.api.views import ApiKeyViewSet, MembershipViewSet, MeView, OrganizationViewSet
from history_app.api.views import BookmarkViewSet
from sessions_app.api.views import (
    AgentViewSet,
    MessageViewSet,
    SessionEventViewSet,
    SessionViewSet,
    TagViewSet,
    TemplateViewSet,
)
from tools_app.api.views import ToolCallViewSet

org_router = SimpleRouter()
org_router.register("agents", AgentViewSet, basename="agent")
org_router.register("sessions", SessionViewSet, basename="session")
org_router.register(r"sessions/(?P<session_id>[^/.]+)/messages", MessageViewSet, basename="session-message")
org_router.register(r"sessions/(?P<session_id>[^/.]+)/events", SessionEventViewSet, basename="session-event")
org_router.register("tool-calls", ToolCallViewSet, basename="tool-call")
org_router.register("tags", TagViewSet, basename="tag")
org_router.register("templates", TemplateViewSet, basename="template")
org_router.register("bookmarks", BookmarkViewSet, basename="bookmark")
org_router.register("api-keys", ApiKeyViewSet, basename="api-key")
org_router.register("members", MembershipViewSet, basename="member")

organization_detail = OrganizationViewSet.as_view({"get": "retrieve", "patch": "partial_update"})

urlpatterns = [
    path("me/", MeView.as_view(), name="me"),
    path("orgs/<slug:org_slug>/", organization_detail, name="organization-detail"),
    path("orgs/<slug:org_slug>/", include(org_router.urls)),
]
