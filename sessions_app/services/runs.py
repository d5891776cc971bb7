"""Runs: one agent turn each, durable on its row (DESIGN.md, principle 3).

The row, not the worker, is the truth: a task carries only ids; a worker claims a run by taking its
lease under the row lock, renews the lease while it streams, and gives it back when the run finishes
or waits for a person. A lapsed lease means a dead worker: the reaper retries the run from its
persisted state or fails it. Each status change is one function here, under the run's row lock, and
writes its event.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from core.db import unique_or_none
from core.errors import ErrorCode, SwitchboardError
from core.events import Pending, event_publish, events_publish
from core.metrics import metrics
from core.queue import enqueue
from core.tenancy import tenant_context
from sessions_app.models import (
    RUN_ACTIVE_STATUSES,
    RUN_TERMINAL_STATUSES,
    Message,
    MessageStatus,
    OnBusy,
    Run,
    RunStatus,
    RuntimeState,
    Session,
)

logger = logging.getLogger(__name__)


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_snapshot(run: Run) -> dict[str, Any]:
    return {
        "id": str(run.pk),
        "status": run.status,
        "model": run.model,
        "provider": run.provider,
        "attempts": run.attempts,
        "trigger_message": str(run.trigger_message_id) if run.trigger_message_id else None,
        "ttft_ms": run.ttft_ms,
        "total_ms": run.total_ms,
        "prompt_tokens": run.prompt_tokens,
        "completion_tokens": run.completion_tokens,
        "error_code": run.error_code or None,
        "error_message": run.error_message or None,
    }


def runtime_state_change(session: Session, state: str, *, run: Run | None = None) -> list[Pending]:
    """Record what the agent is doing now; the ``session.updated`` event to publish if it changed."""
    changed = Session.objects.filter(pk=session.pk).exclude(runtime_state=state).update(runtime_state=state)
    session.runtime_state = state
    if not changed:
        return []
    return [Pending("session.updated", {"runtime_state": state, "changed": ["runtime_state"]}, run)]


# --- creating and dispatching ------------------------------------------------------------------------


def run_dispatch(run: Run) -> None:
    """Enqueue the run's task after the current transaction commits. The task carries ids only.

    A broker that refuses the task (Redis down) is logged, not raised: the run is stored and queued, the
    reaper dispatches a queued run whose task went missing, and the request that made it must not fail
    (the client would post its message again) nor skip the live push of its events."""
    run_id, org_id = str(run.pk), run.organization_id
    transaction.on_commit(
        lambda: enqueue("sessions_app.tasks.run_execute", run_id, org_id, task_name=f"run-{run_id}"),
        robust=True,
    )


def _head_of_queue(session: Session) -> Run | None:
    return (
        Run.objects.filter(session=session, status__in=RUN_ACTIVE_STATUSES)
        .order_by("queued_at", "pk")
        .first()
    )


def run_create(
    session: Session,
    trigger_message: Message,
    *,
    options: dict[str, Any] | None = None,
    known_first: bool = False,
    publish: Sequence[Pending] = (),
) -> Run:
    """Create a queued run for a user message and dispatch it if it is first in the session's line.

    Call inside the transaction that stored the message, holding the session's row lock.
    ``known_first``: the caller knows the session has no other active run (else it is looked up);
    ``publish`` are events to write together with ``run.queued`` (the message's ``message.created``).
    """
    run = Run.objects.create(
        organization_id=session.organization_id,
        session=session,
        trigger_message=trigger_message,
        options=options or {},
    )
    if known_first or _head_of_queue(session) == run:
        run_dispatch(run)  # before the events: at commit the task is enqueued first, then they are pushed
    events_publish(session, [*publish, Pending("run.queued", run_snapshot(run), run)])
    return run


def run_dispatch_next(session: Session) -> Run | None:
    """After a run ends, dispatch the next queued run of the session (the ``enqueue`` policy)."""
    head = _head_of_queue(session)
    if head is not None and head.status == RunStatus.QUEUED:
        run_dispatch(head)
    return head


def busy_policy_apply(session: Session, policy: str) -> bool:
    """Before a new message: ``reject`` refuses it, ``interrupt`` cancels what runs, ``enqueue`` waits.

    True if the session had no active run: the new message's run will be first in line."""
    active = list(Run.objects.filter(session=session, status__in=RUN_ACTIVE_STATUSES))
    if not active:
        return True
    if policy == OnBusy.REJECT:
        raise SwitchboardError(
            ErrorCode.SESSION_BUSY,
            "The agent is still working on the previous message.",
            {"active_runs": [str(r.pk) for r in active], "on_busy": policy},
        )
    if policy == OnBusy.INTERRUPT:
        for run in active:
            run_cancel(run)
    return False


# --- the worker's side -------------------------------------------------------------------------------


def _lease_deadline():
    return timezone.now() + timedelta(seconds=settings.RUN_LEASE_SECONDS)


def _claim_candidates(*, in_line: bool = True, related: bool = True):
    """Runs with what a worker needs: with ``related`` the session, its agent and organization, and
    ``trigger_seq``, the ``seq`` of the run's trigger message (the last turn its context includes); with
    ``in_line`` also ``behind``, true if an earlier run of the same session is still active (so this one
    is not first in line).

    In a locking read that had to wait, ``behind`` reflects the runs as they were when the read began.
    That is safe for a claim: no earlier run can become active later (runs are queued in order and never
    leave a terminal status), and one that finished meanwhile dispatches this run again itself."""
    candidates = Run.objects.all()
    if related:
        candidates = candidates.select_related("session__agent", "session__organization").annotate(
            trigger_seq=F("trigger_message__seq")
        )
    if not in_line:
        return candidates
    earlier = Run.objects.filter(session=OuterRef("session"), status__in=RUN_ACTIVE_STATUSES).filter(
        Q(queued_at__lt=OuterRef("queued_at")) | Q(queued_at=OuterRef("queued_at"), pk__lt=OuterRef("pk"))
    )
    return candidates.annotate(behind=Exists(earlier))


def run_peek(run_id) -> Run | None:
    """The run if it is queued with attempts left, read without a lock: what a worker may prepare before
    its claim, which checks everything again. (A run's task is enqueued only when it is first in line, so
    the peek leaves that check to the claim.)"""
    run = unique_or_none(_claim_candidates(in_line=False).filter(pk=run_id))
    if run is None or run.status != RunStatus.QUEUED:
        return None
    return run if run.attempts < settings.RUN_MAX_ATTEMPTS else None


def run_claim(
    run_id, worker: str, *, peeked: Run | None = None, prepare=None, on_first_claim=None
) -> Run | None:
    """Take the lease of a queued run that is first in its session's line; None if not claimable.

    ``peeked``: the run as :func:`run_peek` read it moments before. The locking read then takes the
    run's own row only and keeps the peek's session, agent, organization and trigger ``seq`` (which a
    claim does not change), instead of reading them again.
    ``prepare(run)`` may return more fields to store with the claim (the model the run will use).
    ``on_first_claim(run)``, called when no worker took the run before, does more in the claim's
    transaction (the executor opens the reply) and returns the events to publish with the claim's, the
    runtime state among them. The claim is one transaction: the run's row, its events and the session's
    runtime state.
    """
    with transaction.atomic():
        candidates = _claim_candidates(related=peeked is None)
        run = unique_or_none(candidates.select_for_update(of=("self",)).filter(pk=run_id))
        if run is None or run.status != RunStatus.QUEUED:
            return None
        if peeked is not None:
            run.session, run.trigger_seq = peeked.session, peeked.trigger_seq
        if run.behind:
            return None  # an earlier run of the session is still active; it dispatches this one when done
        if run.attempts >= settings.RUN_MAX_ATTEMPTS:
            run_fail(run, SwitchboardError(ErrorCode.INTERNAL_ERROR, "The run failed on every attempt."))
            return None
        first = run.started_at is None
        now = timezone.now()
        run.status = RunStatus.RUNNING
        run.attempts += 1
        run.worker = worker
        run.lease_expires_at = _lease_deadline()
        run.heartbeat_at = now
        run.started_at = run.started_at or now
        fields = ["status", "attempts", "worker", "lease_expires_at", "heartbeat_at", "started_at"]
        for name, value in (prepare(run) if prepare else {}).items():
            setattr(run, name, value)
            fields.append(name)
        run.save(update_fields=fields)
        events = [
            Pending("worker.spawned", {"worker": worker, "attempt": run.attempts}, run),
            Pending("run.started", run_snapshot(run), run),
        ]
        if first and on_first_claim is not None:
            events += on_first_claim(run)
        else:
            events += runtime_state_change(run.session, RuntimeState.PROCESSING, run=run)
        events_publish(run.session, events)
    return run


class RunLost(Exception):
    """The worker no longer holds its run: its lease lapsed (the worker stalled) and the reaper failed the
    run or gave it to another worker. The worker stops and writes nothing more for the run.

    Not a ``SwitchboardError``: nothing may record it as the run's failure."""


def _held(run: Run):
    """The run's row while the worker that claimed ``run`` still holds it: running, under the same claim
    (a retry's claim changes ``worker`` or ``attempts``)."""
    return Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING, worker=run.worker, attempts=run.attempts)


def _check_held(locked: Run, run: Run) -> None:
    """Raise :class:`RunLost` unless ``locked`` (the row under its lock) is still ``run``'s claim."""
    if not (
        locked.status == RunStatus.RUNNING and locked.worker == run.worker and locked.attempts == run.attempts
    ):
        raise RunLost(f"run {run.pk} is no longer held by {run.worker} (attempt {run.attempts})")


def run_check_held(run: Run) -> None:
    """:class:`RunLost` unless ``run``'s worker still holds it: before a worker's write that is not a
    status change (those check under the run's lock). A plain read, not a lock: the worker's writes take
    the session's lock for their events, and a run's lock taken first would invert the order of a
    message post that cancels runs under the session's lock."""
    if not _held(run).exists():
        raise RunLost(f"run {run.pk} is no longer held by {run.worker} (attempt {run.attempts})")


def run_heartbeat(run: Run) -> bool:
    """Renew the lease; True if a cancel was requested, :class:`RunLost` if the run is not the worker's
    any more. Runs without a lock (one UPDATE, one read)."""
    now = timezone.now()
    if not _held(run).update(heartbeat_at=now, lease_expires_at=_lease_deadline()):
        raise RunLost(f"run {run.pk} is no longer held by {run.worker} (attempt {run.attempts})")
    return run_cancel_requested(run)


def run_still_held(run: Run) -> bool:
    """True if a cancel was requested, :class:`RunLost` if the run is not the worker's any more. One read."""
    row = unique_or_none(_held(run).values_list("cancel_requested_at"))
    if row is None:
        raise RunLost(f"run {run.pk} is no longer held by {run.worker} (attempt {run.attempts})")
    return row[0] is not None


def run_cancel_requested(run: Run) -> bool:
    return Run.objects.filter(pk=run.pk).exclude(cancel_requested_at=None).exists()


CANCEL_CHECK_SECONDS = 0.25  # how often a worker holding a run looks for a cancel


class RunWatch:
    """Kept by the worker holding a run, from its claim until it lets go; :meth:`cancelled` is called
    every ``CANCEL_CHECK_SECONDS`` while the reply streams or a tool runs. It renews the lease a few times
    per lease period (a write) and otherwise only reads; true once a cancel was requested, and
    :class:`RunLost` once the run is not the worker's any more."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.renewed = time.monotonic()  # the claim has just taken the lease

    def cancelled(self) -> bool:
        if time.monotonic() - self.renewed >= settings.RUN_LEASE_SECONDS / 4:
            self.renewed = time.monotonic()
            return run_heartbeat(self.run)
        return run_still_held(self.run)


def _locked(run: Run) -> Run:
    """The run read again under its row lock, with its session (terminal transitions publish on it)."""
    return Run.objects.select_related("session").select_for_update(of=("self",)).get(pk=run.pk)


def _finish(run: Run, status: str, event_type: str, **fields: Any) -> list[Pending]:
    """Record a terminal status; returns its event for the caller to publish with the rest of the step."""
    run.status = status
    run.finished_at = timezone.now()
    run.lease_expires_at = None
    if run.started_at:
        run.total_ms = int((run.finished_at - run.started_at).total_seconds() * 1000)
    for name, value in fields.items():
        setattr(run, name, value)
    run.save()
    # Counted here, where every terminal transition passes (worker, reaper, cancel without a worker).
    transaction.on_commit(lambda: metrics.run_finished(status, run.error_code or ""))
    return [Pending(event_type, run_snapshot(run), run)]


def run_complete(run: Run, *, prompt_tokens: int, completion_tokens: int) -> Run:
    """running → completed by its worker; the session goes idle and its next queued run (if any) is
    dispatched. :class:`RunLost` if the worker no longer holds the run."""
    with transaction.atomic():
        held, run = run, _locked(run)
        _check_held(run, held)
        events = _finish(
            run,
            RunStatus.COMPLETED,
            "run.completed",
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )
        events += _worker_ended(run, "worker.completed")
        events_publish(run.session, events + _after_terminal(run, RuntimeState.IDLE))
    _checkpoint_after(run)
    return run


def _worker_ended(run: Run, worker_event: str | None) -> list[Pending]:
    """The end of the worker's part, for a terminal transition its worker makes: ``worker.completed``
    (the run ended: completed, cancelled, or failed with a catalogued error) or ``worker.failed`` (the
    worker hit an unexpected error). None for transitions made without a worker."""
    if worker_event is None:
        return []
    data = {"worker": run.worker}
    if worker_event == "worker.failed":
        data["attempt"] = run.attempts
    return [Pending(worker_event, data, run)]


def run_fail(
    run: Run,
    error: SwitchboardError,
    *,
    message: Message | None = None,
    worker_event: str | None = None,
    usage: dict[str, int] | None = None,
) -> Run:
    """→ failed with a catalogue code; ``error.occurred`` is written and the session is left usable.
    ``worker_event``: the run's worker fails it (see :func:`_worker_ended`); a worker that no longer holds
    the run changes nothing. ``usage``: the tokens its model calls cost (``prompt_tokens``,
    ``completion_tokens``)."""
    with transaction.atomic():
        held, run = run, _locked(run)
        if run.status in RUN_TERMINAL_STATUSES:
            return run
        if worker_event is not None:
            try:
                _check_held(run, held)
            except RunLost:
                logger.warning("run %s: a worker that lost it did not fail it (%s)", run.pk, error.code)
                return run
        events = _message_close(message, MessageStatus.FAILED, run) if message is not None else []
        events += _finish(
            run,
            RunStatus.FAILED,
            "run.failed",
            error_code=error.code.value,
            error_message=error.message,
            **(usage or {}),
        )
        events.append(Pending("error.occurred", error.as_dict()["error"], run))
        events += _worker_ended(run, worker_event)
        events_publish(run.session, events + _after_terminal(run, RuntimeState.ERROR))
    return run


def run_finish_cancelled(
    run: Run,
    *,
    message: Message | None = None,
    worker_event: str | None = None,
    usage: dict[str, int] | None = None,
) -> Run:
    """Record a cancel: the partial reply is kept with status ``cancelled``. Idempotent.
    ``worker_event``: the run's worker stops it (see :func:`_worker_ended`); :class:`RunLost` if that
    worker no longer holds the run. ``usage``: as for :func:`run_fail`."""
    with transaction.atomic():
        held, run = run, _locked(run)
        if run.status in RUN_TERMINAL_STATUSES:
            return run
        if worker_event is not None:
            _check_held(run, held)
        if message is None:
            message = Message.objects.filter(run=run, status=MessageStatus.STREAMING).first()
        if message is not None:  # its event first; the calls settled below publish theirs after it
            events_publish(run.session, _message_close(message, MessageStatus.CANCELLED, run))
        _answer_open_tool_calls(run)
        events = _finish(run, RunStatus.CANCELLED, "run.cancelled", **(usage or {}))
        events += _worker_ended(run, worker_event)
        events_publish(run.session, events + _after_terminal(run, RuntimeState.IDLE))
    return run


def run_cancel(run: Run) -> Run:
    """Cancel a run; harmless when already finished.

    A run no worker holds (queued, or waiting for approval) is cancelled here and now; a running one is
    flagged, and its worker stops within a second (or the reaper finishes it if the worker is gone).
    """
    with transaction.atomic():
        run = _locked(run)
        if run.status in RUN_TERMINAL_STATUSES:
            return run
        if run.cancel_requested_at is None:
            run.cancel_requested_at = timezone.now()
            run.save(update_fields=["cancel_requested_at"])
        if run.status in (RunStatus.QUEUED, RunStatus.REQUIRES_ACTION):
            return run_finish_cancelled(run)
    return run


def run_require_action(run: Run, *, usage: dict[str, int] | None = None) -> Run:
    """running → requires_action: waiting for a person; the worker lets go of the run.

    If every call was decided while the worker still held the run (the decisions' requeue found it
    running and left it), nobody is left to wake it: it goes straight back to the queue instead.
    ``attempts`` counts the workers that took the run since it last came to rest; a clean release starts
    the count again, so rounds of approvals never use up the retries meant for lost workers.

    A cancel requested while the worker recorded the calls (the run was still running, so the cancel only
    flagged it) ends the run cancelled instead. :class:`RunLost` if the worker no longer holds the run.
    ``usage``: the tokens its model calls cost so far.
    """
    from tools_app.models import ToolCall, ToolCallStatus

    with transaction.atomic():
        held, run = run, _locked(run)
        _check_held(run, held)
        if run.cancel_requested_at is not None:
            return run_finish_cancelled(run, worker_event="worker.completed", usage=usage)
        waiting = ToolCall.objects.filter(run=run, status=ToolCallStatus.PENDING).exists()
        run.status = RunStatus.REQUIRES_ACTION if waiting else RunStatus.QUEUED
        run.lease_expires_at = None
        run.attempts = 0
        for name, value in (usage or {}).items():
            setattr(run, name, value)
        run.save(update_fields=["status", "lease_expires_at", "attempts", *(usage or {})])
        released = {"worker": run.worker, "released": True}
        if waiting:
            events = [
                Pending("run.requires_action", run_snapshot(run), run),
                Pending("worker.completed", released, run),
                *runtime_state_change(run.session, RuntimeState.AWAITING_APPROVAL, run=run),
            ]
        else:
            events = [
                Pending("worker.completed", released, run),
                Pending("run.queued", run_snapshot(run), run),
            ]
            run_dispatch(run)
        events_publish(run.session, events)
    return run


def run_requeue(run: Run) -> Run:
    """requires_action → queued, after the last pending decision; dispatched at commit."""
    with transaction.atomic():
        run = _locked(run)
        if run.status != RunStatus.REQUIRES_ACTION:
            return run
        run.status = RunStatus.QUEUED
        run.save(update_fields=["status"])
        events = [Pending("run.queued", run_snapshot(run), run)]
        events_publish(
            run.session, events + runtime_state_change(run.session, RuntimeState.PROCESSING, run=run)
        )
        run_dispatch(run)
    return run


def _message_close(message: Message, status: str, run: Run) -> list[Pending]:
    from sessions_app.services.messages import message_snapshot

    Message.objects.filter(pk=message.pk).update(status=status)
    message.status = status
    return [Pending("message.updated", message_snapshot(message), run)]


def _after_terminal(run: Run, state: str) -> list[Pending]:
    """Dispatch the session's next queued run, if any; the runtime state's event to publish: ``state``
    with no run left, else what the run first in line is doing (waiting for a person, or working)."""
    session = run.session
    head = run_dispatch_next(session)
    if head is not None:
        waiting = head.status == RunStatus.REQUIRES_ACTION
        state = RuntimeState.AWAITING_APPROVAL if waiting else RuntimeState.PROCESSING
    return runtime_state_change(session, state, run=run)


def _answer_open_tool_calls(run: Run) -> None:
    # A tool call left unanswered would make the next model call malformed (every assistant tool call
    # needs its tool result), so a cancelled run settles and answers them all.
    from tools_app.services.tool_calls import tool_calls_settle_cancelled

    tool_calls_settle_cancelled(run)


def _checkpoint_after(run: Run) -> None:
    try:
        from history_app.services.checkpoints import checkpoint_create
    except ImportError:  # checkpoints are provided by the history app
        return
    try:
        checkpoint_create(run.session, reason="auto")
    except Exception:  # a failed checkpoint must not fail the finished run
        logger.exception("automatic checkpoint after run %s failed", run.pk)


def run_wait(run: Run, timeout: float, poll: float = 0.05) -> Run:
    """Wait until the run finishes or needs a person, at most ``timeout`` seconds (stateless transport).

    The database connection goes back to the pool between polls, so waiting requests do not hold one.
    """
    import time

    from django.db import connection

    deadline = time.monotonic() + timeout
    while True:
        run = Run.objects.get(pk=run.pk)
        if run.status in RUN_TERMINAL_STATUSES or run.status == RunStatus.REQUIRES_ACTION:
            return run
        if time.monotonic() >= deadline:
            return run
        if not connection.in_atomic_block:
            connection.close()
        time.sleep(poll)


def run_reply(run: Run) -> Message | None:
    """The run's latest assistant message."""
    from sessions_app.models import MessageRole

    return Message.objects.filter(run=run, role=MessageRole.ASSISTANT).order_by("-seq").first()


# --- the reaper ----------------------------------------------------------------------------------------


def runs_reap() -> int:
    """Find runs whose worker died (lapsed lease): retry them from persisted state, or fail them.

    Also re-dispatches queued runs that have waited too long (a lost task); claiming is idempotent,
    so a duplicate task is harmless. Runs across every organization, each in its tenant context.
    """
    now = timezone.now()
    stale = list(
        Run.all_tenants_unsafe.select_related("organization").filter(
            status=RunStatus.RUNNING, lease_expires_at__lt=now
        )
    )
    waiting = list(
        Run.all_tenants_unsafe.select_related("organization").filter(
            status=RunStatus.QUEUED, queued_at__lt=now - timedelta(seconds=2 * settings.RUN_LEASE_SECONDS)
        )
    )
    for run in stale:
        with tenant_context(run.organization):
            _reap_one(run)
    for run in waiting:
        with tenant_context(run.organization):
            if _head_of_queue(run.session) == run:
                with transaction.atomic():
                    run_dispatch(run)
    return len(stale)


def _reap_one(run: Run) -> None:
    with transaction.atomic():
        run = _locked(run)
        if (
            run.status != RunStatus.RUNNING
            or run.lease_expires_at is None
            or run.lease_expires_at >= timezone.now()
        ):
            return
        event_publish(run.session, "worker.stalled", {"worker": run.worker, "attempt": run.attempts}, run=run)
        if run.cancel_requested_at is not None:
            run_finish_cancelled(run)
        elif run.attempts >= settings.RUN_MAX_ATTEMPTS:
            message = Message.objects.filter(run=run, status=MessageStatus.STREAMING).first()
            run_fail(
                run,
                SwitchboardError(ErrorCode.INTERNAL_ERROR, "The worker running this turn was lost."),
                message=message,
            )
        else:
            run.status = RunStatus.QUEUED
            run.lease_expires_at = None
            run.worker = ""
            run.save(update_fields=["status", "lease_expires_at", "worker"])
            event_publish(run.session, "run.queued", {**run_snapshot(run), "retry": True}, run=run)
            run_dispatch(run)
