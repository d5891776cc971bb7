"""The run executor: what a queue worker does with one run.

It claims the run's lease (storing the model it will use), builds the context, sends the model request
and stores the reply's message while the request is on its way, then publishes the completion as
coalesced ``stream.chunk`` events: the first delta at once, then one flush every ``STREAM_FLUSH_MS``, or
less often when flushes get slow (``FLUSH_BUDGET``). Each chunk appends to the reply's text in the same
transaction as its event, so the message and the event log always agree. The provider stream is read on
a separate thread: the loop here wakes at least every ``CHECK_INTERVAL`` to flush and notice a cancel
(renewing the lease four times per lease period), and closes the provider's connection to stop at once.
Tool calls go to the tools app; a call that needs a person ends the worker's part until a decision
re-enqueues the run.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Concat

from core.errors import ErrorCode, SwitchboardError
from core.events import Pending, event_publish, events_publish
from core.metrics import metrics
from sessions_app.models import Message, MessageRole, MessageStatus, Run, RuntimeState
from sessions_app.runtime.context import build_context, effective_config, resolve_model
from sessions_app.runtime.providers import (
    CompletionStream,
    Delta,
    ProviderSettings,
    ToolCallRequest,
    provider_for,
    provider_settings_for_org,
)
from sessions_app.services import runs
from sessions_app.services.messages import message_append, message_snapshot

logger = logging.getLogger(__name__)

CHECK_INTERVAL = 0.25  # seconds between cancel checks (and lease renewals) while streaming
# A stream spends at most about this share of its time writing chunks: when a flush gets slow (a busy
# database or CPU), the next one waits longer and carries more text, so load sheds instead of piling up.
FLUSH_BUDGET = 0.1
FLUSH_MAX_INTERVAL = 1.0  # seconds: however busy, a watcher sees new text at least this often
_END = object()


@dataclass
class StreamResult:
    message: Message
    text: str = ""
    tool_calls: list[ToolCallRequest] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cancelled: bool = False


def run_execute(run_id: str) -> None:
    """Execute one run to its next resting point. Call inside the run's tenant context."""
    worker = runs.worker_identity()
    try:  # read before the claim, so that the claim stores the model too; a failure fails the run below
        conf, conf_error = provider_settings_for_org(), None
    except SwitchboardError as error:
        conf, conf_error = None, error

    def model_fields(run: Run) -> dict[str, str]:
        return {"model": resolve_model(run.session, conf, run.options.get("model")), "provider": conf.kind}

    run = runs.run_claim(run_id, worker, prepare=model_fields if conf else None)
    if run is None:
        return
    executor = RunExecutor(run, conf)
    try:
        if conf_error is not None:
            raise conf_error
        executor.execute()
    except SwitchboardError as error:
        runs.run_fail(run, error, message=executor.open_message)
    except Exception:
        logger.exception("run %s failed unexpectedly", run.pk)
        error = SwitchboardError(ErrorCode.INTERNAL_ERROR, "The run failed unexpectedly.")
        event_publish(run.session, "worker.failed", {"worker": worker, "attempt": run.attempts}, run=run)
        runs.run_fail(run, error, message=executor.open_message)


class RunExecutor:
    def __init__(self, run: Run, conf: ProviderSettings | None = None) -> None:
        self.run = run
        self.conf = conf
        self.session = run.session
        self.agent = self.session.agent
        self.open_message: Message | None = None
        self.prompt_tokens = run.prompt_tokens
        self.completion_tokens = run.completion_tokens

    def execute(self) -> None:
        from tools_app.runtime import tool_calls_process, tool_calls_resume, tool_specs

        conf = self.conf or provider_settings_for_org()
        provider = provider_for(conf)
        model = self.run.model or resolve_model(self.session, conf, self.run.options.get("model"))
        config = effective_config(self.session)

        if tool_calls_resume(self.run) == "requires_action":
            runs.run_require_action(self.run)
            return
        for turn in range(settings.RUN_MAX_TOOL_ROUNDS):
            # The claim just found the run queued, not cancelled; a later cancel is seen by the stream.
            if turn and runs.run_cancel_requested(self.run):
                runs.run_finish_cancelled(self.run)
                return
            tools = tool_specs(self.session, self.agent)
            messages = build_context(self.session, self.agent, run=self.run)
            started = time.monotonic()
            result = self.stream(
                provider.stream(
                    messages=messages,
                    model=model,
                    tools=tools or None,
                    temperature=config.get("temperature"),
                    max_tokens=config.get("max_tokens"),
                )
            )
            metrics.llm_response_seconds.observe(time.monotonic() - started)
            metrics.tokens(result.prompt_tokens, result.completion_tokens)  # every call costs, even cancelled
            self.prompt_tokens += result.prompt_tokens
            self.completion_tokens += result.completion_tokens
            if result.cancelled:
                runs.run_finish_cancelled(self.run, message=result.message)
                self._save_usage()
                return
            if result.tool_calls:
                outcome = tool_calls_process(self.run, result.message, result.tool_calls)
                if outcome == "requires_action":
                    self._save_usage()
                    runs.run_require_action(self.run)
                    return
                continue
            runs.run_complete(
                self.run, prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens
            )
            return
        raise SwitchboardError(
            ErrorCode.LLM_ERROR,
            "The agent asked for tools too many times in one turn.",
            {"limit": settings.RUN_MAX_TOOL_ROUNDS},
        )

    def _save_usage(self) -> None:
        Run.objects.filter(pk=self.run.pk).update(
            prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens
        )

    # --- streaming ------------------------------------------------------------------------------------

    def _open_reply(self) -> Message:
        """The reply being written, stored while the model request is on its way: ``message.created``,
        ``stream.started`` and the runtime state ``streaming`` in one transaction. After a lost worker
        (a retry) the reply already stored is reused and emptied, so no message is persisted twice."""
        with transaction.atomic():
            message, events = None, []
            if self.run.attempts > 1:
                message = Message.objects.filter(
                    run=self.run, role=MessageRole.ASSISTANT, status=MessageStatus.STREAMING
                ).first()
            if message is None:
                message = message_append(
                    self.session,
                    role=MessageRole.ASSISTANT,
                    status=MessageStatus.STREAMING,
                    run=self.run,
                    publish=False,
                )
                events.append(Pending("message.created", message_snapshot(message), self.run))
            elif message.content:
                Message.objects.filter(pk=message.pk).update(content="")
                message.content = ""
            started = {"message": str(message.pk), "attempt": self.run.attempts}
            events.append(Pending("stream.started", started, self.run))
            events += runs.runtime_state_change(self.session, RuntimeState.STREAMING, run=self.run)
            events_publish(self.session, events)
        self.open_message = message
        return message

    def stream(self, stream: CompletionStream) -> StreamResult:
        deltas: queue.Queue = queue.Queue()
        reader = threading.Thread(
            target=_read_stream, args=(stream, deltas), daemon=True, name=f"llm-stream-{self.run.pk}"
        )
        started = time.monotonic()
        reader.start()  # the request goes out while the reply's message is stored
        try:
            message = self._open_reply()
        except BaseException:
            stream.close()
            raise
        result = StreamResult(message=message)
        base_interval = flush_interval = settings.STREAM_FLUSH_MS / 1000
        flush_cost = 0.0  # seconds a flush takes, smoothed
        # The lease is renewed a few times per lease period (a write); cancel is checked every
        # CHECK_INTERVAL (a read).
        renew_interval = settings.RUN_LEASE_SECONDS / 4
        pending: list[str] = []
        last_flush = last_check = last_renew = time.monotonic()
        first_chunk = True
        chunks = 0
        try:
            while True:
                now = time.monotonic()
                wait = CHECK_INTERVAL - (now - last_check)
                if pending:
                    wait = min(wait, flush_interval - (now - last_flush))
                try:
                    item = deltas.get(timeout=max(0.0, wait))
                except queue.Empty:
                    item = None
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, Delta):
                    if item.text:
                        pending.append(item.text)
                    if item.tool_calls:
                        result.tool_calls.extend(item.tool_calls)
                    if item.prompt_tokens is not None:
                        result.prompt_tokens = item.prompt_tokens
                        result.completion_tokens = item.completion_tokens or 0
                now = time.monotonic()
                if pending and (first_chunk or now - last_flush >= flush_interval):
                    if first_chunk:
                        self._first_token(now - started)
                        first_chunk = False
                    result.text += "".join(pending)
                    chunks += 1
                    self._flush(message, "".join(pending), chunks)
                    cost = time.monotonic() - now
                    flush_cost = cost if chunks == 1 else 0.7 * flush_cost + 0.3 * cost
                    flush_interval = min(FLUSH_MAX_INTERVAL, max(base_interval, flush_cost / FLUSH_BUDGET))
                    pending.clear()
                    last_flush = now
                if now - last_check >= CHECK_INTERVAL:
                    last_check = now
                    if now - last_renew >= renew_interval:
                        last_renew = now
                        cancelled = runs.run_heartbeat(self.run)
                    else:
                        cancelled = runs.run_cancel_requested(self.run)
                    if cancelled:
                        stream.close()
                        result.cancelled = True
                        break
        except BaseException:
            stream.close()
            if pending:
                result.text += "".join(pending)
                self._flush(message, "".join(pending), chunks + 1)
            self._save_ttft()
            raise
        if pending and not result.cancelled:
            if first_chunk:
                self._first_token(time.monotonic() - started)
            result.text += "".join(pending)
            chunks += 1
            self._flush(message, "".join(pending), chunks)
        self._stream_ended(message, result, chunks)
        return result

    def _first_token(self, ttft: float) -> None:
        """Time to first token of the run's first model call; stored when the reply ends, not in the
        way of the first chunk."""
        if self.run.ttft_ms is None:
            self.run.ttft_ms = int(ttft * 1000)
            metrics.ttft_seconds.observe(ttft)

    def _save_ttft(self) -> None:
        if self.run.ttft_ms is not None:
            Run.objects.filter(pk=self.run.pk, ttft_ms=None).update(ttft_ms=self.run.ttft_ms)

    def _flush(self, message: Message, delta: str, index: int) -> None:
        """A ``stream.chunk`` and the reply's text, committed together: the text is appended in place
        (each flush sends its delta, not the whole reply so far)."""
        with transaction.atomic(savepoint=False):  # one per chunk: no savepoint round trips
            Message.objects.filter(pk=message.pk).update(content=Concat(F("content"), Value(delta)))
            event_publish(
                self.session,
                "stream.chunk",
                {"message": str(message.pk), "delta": delta, "index": index},
                run=self.run,
            )
        message.content += delta

    def _stream_ended(self, message: Message, result: StreamResult, chunks: int) -> None:
        reason = "cancelled" if result.cancelled else ("tool_calls" if result.tool_calls else "stop")
        status = MessageStatus.CANCELLED if result.cancelled else MessageStatus.COMPLETE
        metadata = dict(message.metadata or {})
        if result.tool_calls:
            metadata["tool_calls"] = [
                {"id": c.id, "name": c.name, "arguments": c.arguments} for c in result.tool_calls
            ]
        with transaction.atomic():
            self._save_ttft()
            Message.objects.filter(pk=message.pk).update(
                content=result.text,
                status=status,
                metadata=metadata,
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
            )
            message.content, message.status, message.metadata = result.text, status, metadata
            message.prompt_tokens, message.completion_tokens = result.prompt_tokens, result.completion_tokens
            event_publish(
                self.session,
                "stream.ended",
                {"message": str(message.pk), "reason": reason, "chunks": chunks},
                run=self.run,
            )
            event_publish(self.session, "message.updated", message_snapshot(message), run=self.run)
        self.open_message = None


def _read_stream(stream: CompletionStream, out: queue.Queue) -> None:
    """Reader thread: hand each delta (or the error that ended the stream) to the executor loop."""
    try:
        for delta in stream:
            out.put(delta)
    except BaseException as exc:  # handed over and re-raised on the executor's thread
        out.put(exc)
    finally:
        out.put(_END)
