"""The web UI's URLs: sign-in at the root, everything else under ``/o/<org_slug>/``."""

from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path

from web.views import (
    api_keys,
    approvals,
    bookmarks,
    chat,
    exec_console,
    exports,
    home,
    sessions,
    statistics,
)

app_name = "web"

organization_patterns = [
    path("", sessions.session_list, name="org-home"),
    path("sessions/", sessions.session_list, name="session-list"),
    path("sessions/new/", sessions.session_new, name="session-new"),
    path("sessions/<str:session_id>/", chat.chat_page, name="chat"),
    path("sessions/<str:session_id>/header/", chat.session_header, name="session-header"),
    path("sessions/<str:session_id>/messages/", chat.message_send, name="message-send"),
    path("sessions/<str:session_id>/messages/earlier/", chat.messages_earlier, name="messages-earlier"),
    path("sessions/<str:session_id>/messages/<str:message_id>/", chat.message_fragment, name="message"),
    path(
        "sessions/<str:session_id>/messages/<str:message_id>/bookmark/",
        chat.message_bookmark,
        name="message-bookmark",
    ),
    path("sessions/<str:session_id>/messages/<str:message_id>/fork/", chat.message_fork, name="message-fork"),
    path("sessions/<str:session_id>/cancel/", chat.run_cancel_view, name="run-cancel"),
    path("sessions/<str:session_id>/rename/", sessions.session_rename, name="session-rename"),
    path("sessions/<str:session_id>/tags/", sessions.session_tags, name="session-tags"),
    path("sessions/<str:session_id>/export/", exports.session_export, name="session-export"),
    re_path(
        r"^sessions/(?P<session_id>[^/]+)/(?P<action>suspend|resume|end)/$",
        sessions.session_transition,
        name="session-transition",
    ),
    path("approvals/", approvals.approvals_inbox, name="approvals"),
    path("tool-calls/", approvals.approvals_inbox, name="tool-call-list"),
    path("tool-calls/<str:call_id>/", approvals.tool_call_card, name="tool-call"),
    path("tool-calls/<str:call_id>/decide/", approvals.tool_call_decision, name="tool-call-decide"),
    path("bookmarks/", bookmarks.bookmark_list, name="bookmarks"),
    path("bookmarks/<str:bookmark_id>/remove/", bookmarks.bookmark_remove, name="bookmark-remove"),
    path("agents/", sessions.agent_list, name="agents"),
    path("templates/", sessions.template_list, name="templates"),
    path("keys/", api_keys.api_key_list, name="api-keys"),
    path("keys/<str:key_id>/revoke/", api_keys.api_key_revoke_view, name="api-key-revoke"),
    path("statistics/", statistics.statistics_page, name="statistics"),
    path("console/", exec_console.exec_list, name="exec-list"),
    path("console/<str:exec_id>/", exec_console.exec_detail, name="exec-detail"),
    path("console/<str:exec_id>/stop/", exec_console.exec_stop, name="exec-stop"),
]

urlpatterns = [
    path("", home.home, name="home"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="registration/login.html", redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("o/<slug:org_slug>/", include(organization_patterns)),
]
