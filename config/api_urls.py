"""Every REST endpoint. Organization endpoints live under ``/api/v1/orgs/<org_slug>/``."""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from core.api.views import ApiKeyViewSet, MembershipViewSet, MeView, OrganizationViewSet, StreamTicketViewSet
from history_app.api.attachments import AttachmentViewSet
from history_app.api.checkpoints import CheckpointViewSet, ForkViewSet
from history_app.api.history import HistoryViewSet, SearchViewSet
from history_app.api.statistics import OrganizationStatisticsViewSet, SessionStatisticsViewSet
from history_app.api.transfer import ExportViewSet, ImportViewSet, SessionExportViewSet
from history_app.api.views import BookmarkViewSet
from sessions_app.api.views import (
    AgentViewSet,
    MessageViewSet,
    ProviderCredentialViewSet,
    RunViewSet,
    SessionEventViewSet,
    SessionViewSet,
    TagViewSet,
    TemplateViewSet,
)
from sessions_app.sse import session_stream
from tools_app.api.exec_views import ExecSessionViewSet
from tools_app.api.views import DirectTaskViewSet, ToolCallViewSet, ToolPolicyViewSet, ToolViewSet

org_router = SimpleRouter()
org_router.register("agents", AgentViewSet, basename="agent")
org_router.register("sessions", SessionViewSet, basename="session")
org_router.register(r"sessions/(?P<session_id>[^/.]+)/messages", MessageViewSet, basename="session-message")
org_router.register(r"sessions/(?P<session_id>[^/.]+)/events", SessionEventViewSet, basename="session-event")
org_router.register(r"sessions/(?P<session_id>[^/.]+)/runs", RunViewSet, basename="session-run")
org_router.register(r"sessions/(?P<session_id>[^/.]+)/tasks", DirectTaskViewSet, basename="session-task")
org_router.register("tool-calls", ToolCallViewSet, basename="tool-call")
org_router.register("tools", ToolViewSet, basename="tool")
org_router.register("tool-policies", ToolPolicyViewSet, basename="tool-policy")
org_router.register("exec-sessions", ExecSessionViewSet, basename="exec-session")
org_router.register("providers", ProviderCredentialViewSet, basename="provider")
org_router.register("stream-ticket", StreamTicketViewSet, basename="stream-ticket")
org_router.register("tags", TagViewSet, basename="tag")
org_router.register("templates", TemplateViewSet, basename="template")
org_router.register("bookmarks", BookmarkViewSet, basename="bookmark")
org_router.register("history", HistoryViewSet, basename="history")
org_router.register("search", SearchViewSet, basename="search")
org_router.register("statistics", OrganizationStatisticsViewSet, basename="statistics")
org_router.register("exports", ExportViewSet, basename="export")
org_router.register("imports", ImportViewSet, basename="import")
org_router.register(
    r"sessions/(?P<session_id>[^/.]+)/statistics", SessionStatisticsViewSet, basename="session-statistics"
)
org_router.register(
    r"sessions/(?P<session_id>[^/.]+)/export", SessionExportViewSet, basename="session-export"
)
org_router.register(
    r"sessions/(?P<session_id>[^/.]+)/checkpoints", CheckpointViewSet, basename="session-checkpoint"
)
org_router.register(r"sessions/(?P<session_id>[^/.]+)/fork", ForkViewSet, basename="session-fork")
org_router.register(
    r"sessions/(?P<session_id>[^/.]+)/messages/(?P<message_id>[^/.]+)/attachments",
    AttachmentViewSet,
    basename="message-attachment",
)
org_router.register("api-keys", ApiKeyViewSet, basename="api-key")
org_router.register("members", MembershipViewSet, basename="member")

organization_detail = OrganizationViewSet.as_view({"get": "retrieve", "patch": "partial_update"})

urlpatterns = [
    path("me/", MeView.as_view(), name="me"),
    path("orgs/<slug:org_slug>/", organization_detail, name="organization-detail"),
    path("orgs/<slug:org_slug>/sessions/<str:session_id>/stream", session_stream, name="session-stream"),
    path("orgs/<slug:org_slug>/", include(org_router.urls)),
]
