"""Agents, sessions, messages, events, tags and templates under ``/api/v1/orgs/<org_slug>/``."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Prefetch, prefetch_related_objects
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from core.access import Access
from core.api.pagination import SeqCursorPagination
from core.api.viewsets import SessionChildViewSet, TenantScopedViewSet
from core.errors import ErrorCode, SwitchboardError
from core.models import Role
from sessions_app.api.filters import SessionFilter
from sessions_app.api.serializers import (
    AgentSerializer,
    MessagePostResponseSerializer,
    MessagePostSerializer,
    MessageSerializer,
    ProviderCredentialSerializer,
    RunSerializer,
    SessionEventSerializer,
    SessionSerializer,
    SessionUpdateSerializer,
    TagSerializer,
    TemplateSerializer,
)
from sessions_app.models import (
    Agent,
    Attachment,
    Message,
    ProviderCredential,
    Run,
    RunStatus,
    Session,
    SessionEvent,
    SessionTemplate,
    Tag,
    Transport,
)
from sessions_app.selectors import session_events_after, tags_by_name, visible_tags, visible_templates
from sessions_app.services import catalog, lifecycle
from sessions_app.services.messages import message_post_user
from sessions_app.services.runs import run_cancel, run_reply, run_wait


def check_session_write(access: Access, session: Session) -> None:
    """Members change their own sessions; admins and owners any session of the organization."""
    if access.has_role(Role.ADMIN):
        return
    if access.has_role(Role.MEMBER) and access.user_id is not None and session.owner_id == access.user_id:
        return
    raise SwitchboardError(
        ErrorCode.PERMISSION_DENIED, "Only the session's owner or an organization admin can do this."
    )


def check_may_own_sessions(access: Access) -> None:
    """A new session (created or forked) belongs to its caller. An API key whose creator's account was
    deleted acts for nobody: a session it made would have no owner, so below admin it could not post to
    it or change it. Such a key is refused at creation with the reason, instead of making sessions it
    cannot use."""
    if access.user_id is not None or access.has_role(Role.ADMIN):
        return
    raise SwitchboardError(
        ErrorCode.PERMISSION_DENIED,
        "This API key's creator no longer has an account, so a session it made would have no owner that "
        "could use it. Ask an organization admin for a new key.",
        {"api_key": access.api_key.prefix if access.api_key else None},
    )


class AgentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    serializer_class = AgentSerializer
    model = Agent
    not_found_code = ErrorCode.AGENT_NOT_FOUND
    write_role = Role.ADMIN
    ordering = ["name"]
    ordering_fields = ["name", "created_at"]
    filterset_fields = ["is_active", "default_transport", "approval_mode"]

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        agent = catalog.agent_create(organization=self.organization, **serializer.validated_data)
        return Response(self.get_serializer(agent).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        agent = self.get_object()
        serializer = self.get_serializer(agent, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        return Response(self.get_serializer(catalog.agent_update(agent, **serializer.validated_data)).data)

    def destroy(self, request, *args, **kwargs):
        catalog.agent_delete(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class SessionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    serializer_class = SessionSerializer
    model = Session
    not_found_code = ErrorCode.SESSION_NOT_FOUND
    not_found_what = "Session"
    filterset_class = SessionFilter
    ordering_fields = ["created_at", "last_activity_at", "updated_at"]
    ordering = ["-created_at"]

    def get_base_queryset(self):
        return Session.objects.select_related("agent", "owner").prefetch_related("tags")

    def create(self, request, *args, **kwargs):
        check_may_own_sessions(self.access)
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        template = data.get("template")
        agent = data.get("agent") or (template.agent if template else None)
        if agent is None:
            raise SwitchboardError(
                ErrorCode.VALIDATION_ERROR, "An agent is required.", {"agent": ["This field is required."]}
            )
        session = lifecycle.session_create(
            organization=self.organization,
            agent=agent,
            owner=request.user if getattr(request.user, "pk", None) else None,
            name=data.get("name", ""),
            template=template,
            config=data.get("config"),
            tags=tags_by_name(data["tags"]) if data.get("tags") else None,
            metadata=data.get("metadata"),
            expires_at=data.get("expires_at"),
        )
        return Response(self.get_serializer(session).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=SessionUpdateSerializer)
    def partial_update(self, request, *args, **kwargs):
        session = self.get_object()
        check_session_write(self.access, session)
        serializer = SessionUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        if "tags" in data:
            data["tags"] = tags_by_name(data["tags"])
        session = lifecycle.session_update(session, **data)
        return Response(self.get_serializer(self.get_queryset().get(pk=session.pk)).data)

    def _transition(self, transition):
        session = self.get_object()
        check_session_write(self.access, session)
        transition(session)
        return Response(self.get_serializer(self.get_queryset().get(pk=session.pk)).data)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def activate(self, request, *args, **kwargs):
        return self._transition(lifecycle.session_activate)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def suspend(self, request, *args, **kwargs):
        return self._transition(lifecycle.session_suspend)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def resume(self, request, *args, **kwargs):
        return self._transition(lifecycle.session_resume)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def end(self, request, *args, **kwargs):
        return self._transition(lifecycle.session_end)


class MessageViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, SessionChildViewSet):
    serializer_class = MessageSerializer
    model = Message
    not_found_code = ErrorCode.MESSAGE_NOT_FOUND
    pagination_class = SeqCursorPagination
    filterset_fields = ["role", "status"]
    ordering_fields = ["seq"]
    ordering = ["seq"]

    def get_base_queryset(self):
        return (
            Message.objects.select_related("author")
            .prefetch_related("attachments")
            .filter(session=self.get_session())
        )

    @extend_schema(
        request=MessagePostSerializer,
        responses={201: MessagePostResponseSerializer, 200: MessagePostResponseSerializer},
        parameters=[
            OpenApiParameter("wait", OpenApiTypes.BOOL, description="Answer with the finished reply.")
        ],
    )
    def create(self, request, *args, **kwargs):
        """Post a user message; it creates a run. With ``?wait=true`` (or an agent whose default transport is
        ``stateless``) the reply comes back in the same call, bounded by ``STATELESS_WAIT_SECONDS``."""
        session = self.get_session()
        check_session_write(self.access, session)
        serializer = MessagePostSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        author = request.user if getattr(request.user, "pk", None) else None
        uploads = request.FILES.getlist("files") if hasattr(request, "FILES") else []
        if uploads:
            from history_app.services.attachments import attachments_add, attachments_validate
        message, run = message_post_user(
            session,
            data["content"],
            author=author,
            run_options={"model": data["model"]} if data.get("model") else {},
            before_store=(lambda: attachments_validate(uploads)) if uploads else None,
            after_store=(lambda m: attachments_add(m, uploads)) if uploads else None,
        )
        if not uploads:  # a message posted without files has none: the response needs no query for them
            prefetch_related_objects([message], Prefetch("attachments", queryset=Attachment.objects.none()))
        wait = request.query_params.get("wait")
        wants_wait = (
            wait in ("1", "true", "yes")
            if wait is not None
            else (run.session.agent.default_transport == Transport.STATELESS)
        )
        body = {"message": self.get_serializer(message).data, "run": RunSerializer(run).data, "reply": None}
        if not wants_wait:
            return Response(body, status=status.HTTP_201_CREATED)
        run = run_wait(run, settings.STATELESS_WAIT_SECONDS)
        reply = run_reply(run)
        body["run"] = RunSerializer(run).data
        body["reply"] = self.get_serializer(reply).data if reply else None
        if run.status == RunStatus.FAILED:
            error = SwitchboardError(
                ErrorCode(run.error_code or ErrorCode.LLM_ERROR),
                run.error_message or "The run failed.",
                {"run": str(run.pk), "message": str(message.pk)},
            )
            return Response(error.as_dict(), status=error.status)
        done = run.status in (RunStatus.COMPLETED, RunStatus.CANCELLED)
        return Response(body, status=status.HTTP_200_OK if done else status.HTTP_202_ACCEPTED)


class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, SessionChildViewSet):
    """Runs of a session; ``cancel`` is idempotent and acknowledged with the run's state."""

    serializer_class = RunSerializer
    model = Run
    not_found_code = ErrorCode.RUN_NOT_FOUND
    filterset_fields = ["status"]
    ordering = ["-queued_at"]
    ordering_fields = ["queued_at"]
    pagination_class = None

    def get_base_queryset(self):
        return Run.objects.filter(session=self.get_session())

    @extend_schema(request=None, responses=RunSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, *args, **kwargs):
        run = self.get_object()
        check_session_write(self.access, self.get_session())
        return Response(self.get_serializer(run_cancel(run)).data, status=status.HTTP_202_ACCEPTED)


class SessionEventViewSet(mixins.ListModelMixin, SessionChildViewSet):
    """The session's durable event log, from ``after`` on: the catch-up half of every stream."""

    serializer_class = SessionEventSerializer
    model = SessionEvent
    not_found_code = ErrorCode.SESSION_NOT_FOUND
    pagination_class = None
    filter_backends: list = []

    def get_base_queryset(self):
        return SessionEvent.objects.filter(session=self.get_session())

    @extend_schema(
        parameters=[
            OpenApiParameter("after", OpenApiTypes.INT, description="Last seq seen; events after it."),
            OpenApiParameter("limit", OpenApiTypes.INT, description="At most this many (1-1000, 500)."),
        ]
    )
    def list(self, request, *args, **kwargs):
        try:
            after = int(request.query_params.get("after", 0))
            limit = int(request.query_params.get("limit", 500))
        except ValueError:
            raise SwitchboardError(ErrorCode.VALIDATION_ERROR, "after and limit must be integers.") from None
        if after < 0 or not 1 <= limit <= 1000:
            raise SwitchboardError(ErrorCode.VALIDATION_ERROR, "after must be >= 0 and limit 1-1000.")
        session = self.get_session()
        if after > session.last_event_seq:
            # Echoed back as ``last_seq``, it would become the client's next resume point: refused as the
            # streams refuse it.
            raise SwitchboardError(
                ErrorCode.VALIDATION_ERROR,
                f"after is past the session's last event ({session.last_event_seq}).",
                {"last_seq": session.last_event_seq},
            )
        events = session_events_after(session, after, limit)
        return Response(
            {
                "events": [self.get_serializer(e).data for e in events],
                "last_seq": events[-1].seq if events else after,
                "has_more": bool(events) and events[-1].seq < session.last_event_seq,
            }
        )


class TagViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    serializer_class = TagSerializer
    model = Tag
    not_found_code = ErrorCode.TAG_NOT_FOUND
    include_shared_rows = True
    pagination_class = None
    filterset_fields = ["is_system"]
    ordering = ["name"]

    def get_base_queryset(self):
        return visible_tags()

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        tag = catalog.tag_create(organization=self.organization, **serializer.validated_data)
        return Response(self.get_serializer(tag).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        tag = self.get_object()
        serializer = self.get_serializer(tag, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        tag = catalog.tag_update(tag, organization=self.organization, **serializer.validated_data)
        return Response(self.get_serializer(tag).data)

    def destroy(self, request, *args, **kwargs):
        catalog.tag_delete(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class TemplateViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    serializer_class = TemplateSerializer
    model = SessionTemplate
    not_found_code = ErrorCode.TEMPLATE_NOT_FOUND
    include_shared_rows = True
    pagination_class = None
    filterset_fields = ["is_system"]
    ordering = ["name"]

    def get_base_queryset(self):
        return visible_templates().select_related("agent")

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        template = catalog.template_create(organization=self.organization, **serializer.validated_data)
        return Response(self.get_serializer(template).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        template = self.get_object()
        serializer = self.get_serializer(template, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        template = catalog.template_update(
            template, organization=self.organization, **serializer.validated_data
        )
        return Response(self.get_serializer(template).data)

    def destroy(self, request, *args, **kwargs):
        catalog.template_delete(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProviderCredentialViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, TenantScopedViewSet
):
    """The organization's LLM providers. Admins only; the API key is write-only."""

    serializer_class = ProviderCredentialSerializer
    model = ProviderCredential
    not_found_code = ErrorCode.NOT_FOUND
    read_role = Role.ADMIN
    write_role = Role.ADMIN
    pagination_class = None
    ordering = ["name"]

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        credential = catalog.provider_credential_save(
            None, organization=self.organization, **serializer.validated_data
        )
        return Response(self.get_serializer(credential).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        credential = self.get_object()
        serializer = self.get_serializer(credential, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        credential = catalog.provider_credential_save(
            credential, organization=self.organization, **serializer.validated_data
        )
        return Response(self.get_serializer(credential).data)
