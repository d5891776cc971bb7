"""Many-session exports: an ``Export`` row records the request and its progress; a queue task writes the
JSONL file (``history_app.tasks.export_run``) and the API serves it when done."""

from __future__ import annotations

import logging
import tempfile
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.files import File
from django.db import transaction
from django.http import QueryDict
from django.utils import timezone

from core.errors import ErrorCode, SwitchboardError
from core.models import Organization
from core.tenancy import tenant_context
from history_app.filters import HISTORY_FILTER_PARAMS, FilterRequest, HistoryFilter, query_dict
from history_app.formats import header_record, jsonl_line, session_records
from history_app.models import Export, ExportStatus
from sessions_app.models import Session

logger = logging.getLogger(__name__)

PROGRESS_EVERY_SECONDS = 1.0
QUEUED_EXPORT_GIVE_UP = timedelta(hours=24)  # a queued export no worker took by then fails


def export_filters(params: QueryDict | dict[str, Any]) -> dict[str, list[str]]:
    """The history filters among ``params``, as lists of strings (what an ``Export`` stores)."""
    if isinstance(params, QueryDict):
        items = params.lists()
    else:
        items = ((k, v if isinstance(v, list) else [v]) for k, v in params.items())
    filters: dict[str, list[str]] = {}
    for key, values in items:
        if key in HISTORY_FILTER_PARAMS:
            filters[key] = [
                str(v).lower() if isinstance(v, bool) else str(v) for v in values if v is not None
            ]
    return filters


def filtered_sessions(filters: dict[str, list[str]], user) -> Any:
    """The sessions the history filters select, for ``user``; ``VALIDATION_ERROR`` if a filter is bad.

    Runs inside the organization's tenant context.
    """
    data = query_dict(filters)
    filterset = HistoryFilter(
        data=data,
        queryset=Session.objects.all(),
        request=FilterRequest(user=user, query_params=data),
    )
    if not filterset.is_valid():
        raise SwitchboardError(
            ErrorCode.VALIDATION_ERROR, "The filters are not valid.", dict(filterset.errors)
        )
    return filterset.qs


def export_create(*, organization: Organization, created_by, filters: dict[str, list[str]]) -> Export:
    """Record an export of the sessions ``filters`` select and queue it after commit (ids only)."""
    user = created_by if getattr(created_by, "pk", None) else None
    total = filtered_sessions(filters, user).count()
    with transaction.atomic():
        export = Export.objects.create(
            organization=organization, created_by=user, filters=filters, total=total
        )
        export_id = str(export.pk)
        # A broker that refuses the task is logged, not raised: the export is stored, the sweep enqueues it
        # again (exports_fail_abandoned).
        transaction.on_commit(lambda: export_dispatch(export_id), robust=True)
    return export


def export_dispatch(export_id: str) -> None:
    """Enqueue the task that writes export ``export_id`` (ids only). A repeated task does nothing."""
    from core.queue import enqueue

    enqueue("history_app.tasks.export_run", export_id, task_name=f"export-{export_id}")


def export_write(export: Export) -> Export:
    """Write the export's JSONL file and mark it completed (or failed). Runs in the export's tenant
    context; a completed or running export is left alone, so a repeated task does nothing."""
    claimed = Export.objects.filter(pk=export.pk, status=ExportStatus.QUEUED).update(
        status=ExportStatus.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        return Export.objects.get(pk=export.pk)
    export.refresh_from_db()
    try:
        sessions = (
            filtered_sessions(export.filters, export.created_by)
            .select_related("agent", "owner")
            .prefetch_related("tags")
            .order_by("created_at", "id")
        )
        total = sessions.count()
        Export.objects.filter(pk=export.pk).update(total=total)
        with tempfile.TemporaryFile(mode="w+b") as handle:
            handle.write(jsonl_line(header_record(total)).encode())
            written, last_report = 0, time.monotonic()
            for session in sessions.iterator(chunk_size=100):
                for record in session_records(session):
                    handle.write(jsonl_line(record).encode())
                written += 1
                if time.monotonic() - last_report >= PROGRESS_EVERY_SECONDS:
                    Export.objects.filter(pk=export.pk).update(progress=written)
                    last_report = time.monotonic()
            size = handle.tell()
            handle.seek(0)
            export.file.save(f"{export.pk}.jsonl", File(handle), save=False)
        Export.objects.filter(pk=export.pk).update(
            status=ExportStatus.COMPLETED,
            progress=written,
            file=export.file.name,
            size=size,
            finished_at=timezone.now(),
        )
    except Exception as exc:
        logger.exception("export %s failed", export.pk)
        message = exc.message if isinstance(exc, SwitchboardError) else "The export failed unexpectedly."
        Export.objects.filter(pk=export.pk).update(
            status=ExportStatus.FAILED, error=message, finished_at=timezone.now()
        )
    export.refresh_from_db()
    return export


def exports_fail_abandoned() -> int:
    """Settle the exports that their task no longer serves, in every organization; returns how many
    failed. Run by the hourly sweep.

    - Running past the queue's task timeout: the worker died (killed at the timeout, a deploy). The queue
      does not run a task twice and a repeated task skips a running export, so it fails.
    - Queued past the task timeout: the task went missing (the broker lost it, or refused it at commit),
      so it is enqueued again; a duplicate of a task still waiting does nothing.
    - Queued for ``QUEUED_EXPORT_GIVE_UP`` (no worker ever took it, even enqueued again): it fails.
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.Q_CLUSTER["timeout"] + 60)
    failed = 0
    for organization in Organization.objects.all():
        with tenant_context(organization):
            failed += Export.objects.filter(status=ExportStatus.RUNNING, started_at__lt=cutoff).update(
                status=ExportStatus.FAILED,
                error="The export stopped before it finished (its worker was lost); start a new export.",
                finished_at=now,
            )
            queued = Export.objects.filter(status=ExportStatus.QUEUED, created_at__lt=cutoff)
            failed += queued.filter(created_at__lt=now - QUEUED_EXPORT_GIVE_UP).update(
                status=ExportStatus.FAILED,
                error="The export never started (no queue worker took it); start a new export.",
                finished_at=now,
            )
            for export_id in queued.values_list("pk", flat=True):
                export_dispatch(str(export_id))
    return failed


def exports_cleanup() -> int:
    """Delete finished exports (their files and rows) older than ``EXPORT_RETENTION_HOURS``, in every
    organization; returns how many. Unfinished ones are left to their task. 0 hours keeps them forever."""
    hours = settings.EXPORT_RETENTION_HOURS
    if hours <= 0:
        return 0
    cutoff = timezone.now() - timedelta(hours=hours)
    removed = 0
    for organization in Organization.objects.all():
        with tenant_context(organization):
            finished = Export.objects.filter(
                status__in=[ExportStatus.COMPLETED, ExportStatus.FAILED], finished_at__lt=cutoff
            )
            for export in finished:
                if export.file:
                    export.file.delete(save=False)  # a file already gone is not an error
                export.delete()
                removed += 1
    return removed
