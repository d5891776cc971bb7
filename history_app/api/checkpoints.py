"""Checkpoints of a session and forks from a checkpoint or a message."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.response import Response

from core.access import get_object_in_org
from core.api.viewsets import SessionChildViewSet
from core.errors import ErrorCode, not_found
from history_app.api.serializers import (
    CheckpointCreateSerializer,
    CheckpointDetailSerializer,
    CheckpointSerializer,
    ForkSerializer,
)
from history_app.services.checkpoints import checkpoint_create, session_fork
from sessions_app.api.serializers import SessionSerializer
from sessions_app.api.views import check_may_own_sessions
from sessions_app.models import Checkpoint, Session


def _caller(request):
    return request.user if getattr(request.user, "pk", None) else None


class CheckpointViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, SessionChildViewSet):
    serializer_class = CheckpointSerializer
    model = Checkpoint
    not_found_code = ErrorCode.NOT_FOUND
    not_found_what = "Checkpoint"
    filter_backends: list = []
    ordering = ["-created_at"]

    def get_base_queryset(self):
        return Checkpoint.objects.select_related("created_by").filter(session=self.get_session())

    def get_serializer_class(self):
        return CheckpointDetailSerializer if self.action == "retrieve" else CheckpointSerializer

    def get_object(self):
        checkpoint = get_object_in_org(
            Checkpoint, self.organization, self.kwargs.get("pk"), ErrorCode.NOT_FOUND, "Checkpoint"
        )
        if checkpoint.session_id != self.get_session().pk:
            raise not_found(ErrorCode.NOT_FOUND, "Checkpoint")
        return checkpoint

    @extend_schema(request=CheckpointCreateSerializer, responses={201: CheckpointSerializer})
    def create(self, request, *args, **kwargs):
        form = CheckpointCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        checkpoint = checkpoint_create(
            self.get_session(),
            reason=Checkpoint.Reason.MANUAL,
            name=form.validated_data["name"],
            created_by=_caller(request),
        )
        return Response(CheckpointSerializer(checkpoint).data, status=status.HTTP_201_CREATED)


class ForkViewSet(SessionChildViewSet):
    """``POST sessions/<id>/fork/`` with a ``checkpoint`` or a ``message`` of the session."""

    serializer_class = ForkSerializer
    model = Session
    not_found_code = ErrorCode.SESSION_NOT_FOUND
    filter_backends: list = []
    pagination_class = None

    @extend_schema(request=ForkSerializer, responses={201: SessionSerializer})
    def create(self, request, *args, **kwargs):
        check_may_own_sessions(self.access)
        form = ForkSerializer(data=request.data, context=self.get_serializer_context())
        form.is_valid(raise_exception=True)
        fork = session_fork(
            self.get_session(),
            checkpoint=form.validated_data.get("checkpoint"),
            message=form.validated_data.get("message"),
            owner=_caller(request),
            name=form.validated_data["name"],
        )
        fork = Session.objects.select_related("agent", "owner").prefetch_related("tags").get(pk=fork.pk)
        return Response(SessionSerializer(fork).data, status=status.HTTP_201_CREATED)
