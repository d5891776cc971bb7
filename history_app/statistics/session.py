"""One session's figures: messages, tool calls, runs, tokens, timings, activity."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Max, Min, Sum
from django.utils import timezone

from history_app.statistics.caching import cached, iso, summary
from sessions_app.models import Message, MessageRole, Run, RunStatus, Session, SessionEvent
from tools_app.models import ToolCall, ToolCallStatus


def _counts(qs, field: str, choices: list[str]) -> dict[str, int]:
    counts = dict.fromkeys(choices, 0)
    for row in qs.values(field).annotate(n=Count("pk")).order_by():
        counts[row[field]] = row["n"]
    return counts


def compute_session_statistics(session: Session) -> dict[str, Any]:
    messages = Message.objects.filter(session=session)
    runs = Run.objects.filter(session=session)
    by_role = _counts(messages, "role", MessageRole.values)
    by_call_status = _counts(ToolCall.objects.filter(session=session), "status", ToolCallStatus.values)
    by_run_status = _counts(runs, "status", RunStatus.values)
    # Runs carry the usage of the model calls they made; messages written outside any run (imported
    # history, for one) carry their own, so those are added and nothing is counted twice.
    run_tokens = runs.aggregate(i=Sum("prompt_tokens"), o=Sum("completion_tokens"))
    loose_tokens = messages.filter(run__isnull=True).aggregate(
        i=Sum("prompt_tokens"), o=Sum("completion_tokens")
    )
    tokens_in = (run_tokens["i"] or 0) + (loose_tokens["i"] or 0)
    tokens_out = (run_tokens["o"] or 0) + (loose_tokens["o"] or 0)
    timings = list(runs.values_list("ttft_ms", "total_ms"))
    span = SessionEvent.objects.filter(session=session).aggregate(
        first=Min("created_at"), last=Max("created_at")
    )
    first = span["first"] or session.created_at
    last = max(t for t in (span["last"], session.last_activity_at, first) if t is not None)
    return {
        "session": str(session.pk),
        "last_event_seq": session.last_event_seq,
        "messages": {"total": sum(by_role.values()), "by_role": by_role},
        "tool_calls": {"total": sum(by_call_status.values()), "by_status": by_call_status},
        "runs": {"total": sum(by_run_status.values()), "by_status": by_run_status},
        "tokens": {"in": tokens_in, "out": tokens_out, "total": tokens_in + tokens_out},
        "ttft_ms": summary([t for t, _ in timings if t is not None]),
        "total_ms": summary([t for _, t in timings if t is not None]),
        "first_activity_at": iso(first),
        "last_activity_at": iso(last),
        "duration_seconds": round((last - first).total_seconds(), 3),
        "computed_at": iso(timezone.now()),
    }


def session_statistics(session: Session) -> dict[str, Any]:
    """The session's figures, from the cache while no event has happened since they were computed.

    Runs inside the session's tenant context. Reads the session's current ``last_event_seq`` first so
    a stale in-memory instance cannot pick up outdated figures.
    """
    seq = Session.objects.filter(pk=session.pk).values_list("last_event_seq", flat=True).first()
    if seq is not None:
        session.last_event_seq = seq
    return cached(
        f"session:{session.pk}:{session.last_event_seq}", lambda: compute_session_statistics(session)
    )
