"""The run executor: what a queue worker does with one run.

It claims the run's lease, builds the context, streams the completion and publishes it as coalesced
``stream.chunk`` events (the first delta at once, then one flush every ``STREAM_FLUSH_MS``), persisting
the reply's text in the same transaction as each chunk event so the message and the event log always
agree. The provider stream is read on a separate thread: the loop here wakes at least every 100 ms to
flush and notice a cancel (renewing the lease four times per lease period), and closes the provider's
connection to stop at once.
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

from core.errors import ErrorCode, SwitchboardError
from core.events import event_publish
from core.metrics import metrics
from sessions_app.models import Message, MessageRole, MessageStatus, Run, RuntimeState
from sessions_app.runtime.context import build_context, effective_config, resolve_model
from sessions_app.runtime.providers import (
    CompletionStream,
    Delta,
    ToolCallRequest,
    provider_for,
    provider_settings_for_org,
)
from sessions_app.services import runs
from sessions_app.services.messages import message_append, message_snapshot

logger = logging.getLogger(__name__)

CHECK_INTERVAL = 0.1  # seconds between lease renewals / cancel checks while streaming
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
    run = runs.run_claim(run_id, worker)
    if run is None:
        return
    executor = RunExecutor(run)
    try:
        executor.execute()
    except SwitchboardError as error:
        runs.run_fail(run, error, message=executor.open_message)
    except Exception:
        logger.exception("run %s failed unexpectedly", run.pk)
        error = SwitchboardError(ErrorCode.INTERNAL_ERROR, "The run failed unexpectedly.")
        event_publish(run.session, "worker.failed", {"worker": worker, "attempt": run.attempts}, run=run)
        runs.run_fail(run, error, message=executor.open_message)


class RunExecutor:
    def __init__(self, run: Run) -> None:
        self.run = run
        self.session = run.session
        self.agent = self.session.agent
        self.open_message: Message | None = None
        self.prompt_tokens = run.prompt_tokens
        self.completion_tokens = run.completion_tokens

    def execute(self) -> None:
        from tools_app.runtime import tool_calls_process, tool_calls_resume, tool_specs

        conf = provider_settings_for_org()
        provider = provider_for(conf)
        model = resolve_model(self.session, conf, self.run.options.get("model"))
        Run.objects.filter(pk=self.run.pk).update(model=model, provider=conf.kind)
        self.run.model, self.run.provider = model, conf.kind
        config = effective_config(self.session)

        if tool_calls_resume(self.run) == "requires_action":
            runs.run_require_action(self.run)
            return
        for _ in range(settings.RUN_MAX_TOOL_ROUNDS):
            if runs.run_cancel_requested(self.run):
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

    def _assistant_message(self) -> Message:
        """The reply being written: reused after a retry, so no message is persisted twice."""
        message = Message.objects.filter(
            run=self.run, role=MessageRole.ASSISTANT, status=MessageStatus.STREAMING
        ).first()
        if message is None:
            message = message_append(
                self.session, role=MessageRole.ASSISTANT, status=MessageStatus.STREAMING, run=self.run
            )
        elif message.content:
            Message.objects.filter(pk=message.pk).update(content="")
            message.content = ""
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
            message = self._assistant_message()
        except BaseException:
            stream.close()
            raise
        result = StreamResult(message=message)
        flush_interval = settings.STREAM_FLUSH_MS / 1000
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
                    result.text += "".join(pending)
                    chunks += 1
                    with transaction.atomic():  # the first chunk commits together with stream.started
                        if first_chunk:
                            self._stream_started(message, now - started)
                            first_chunk = False
                        self._flush(message, "".join(pending), result.text, chunks)
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
                self._flush(message, "".join(pending), result.text, chunks + 1)
            raise
        if pending and not result.cancelled:
            result.text += "".join(pending)
            chunks += 1
            with transaction.atomic():
                if first_chunk:
                    self._stream_started(message, time.monotonic() - started)
                self._flush(message, "".join(pending), result.text, chunks)
        self._stream_ended(message, result, chunks)
        return result

    def _stream_started(self, message: Message, ttft: float) -> None:
        with transaction.atomic(savepoint=False):
            if self.run.ttft_ms is None:
                self.run.ttft_ms = int(ttft * 1000)
                Run.objects.filter(pk=self.run.pk).update(ttft_ms=self.run.ttft_ms)
                metrics.ttft_seconds.observe(ttft)
            event_publish(
                self.session,
                "stream.started",
                {"message": str(message.pk), "attempt": self.run.attempts},
                run=self.run,
            )
            runs.session_set_runtime_state(self.session, RuntimeState.STREAMING, run=self.run)

    def _flush(self, message: Message, delta: str, text: str, index: int) -> None:
        with transaction.atomic(savepoint=False):  # one per chunk: no savepoint round trips
            Message.objects.filter(pk=message.pk).update(content=text)
            event_publish(
                self.session,
                "stream.chunk",
                {"message": str(message.pk), "delta": delta, "index": index},
                run=self.run,
            )
        message.content = text

    def _stream_ended(self, message: Message, result: StreamResult, chunks: int) -> None:
        reason = "cancelled" if result.cancelled else ("tool_calls" if result.tool_calls else "stop")
        status = MessageStatus.CANCELLED if result.cancelled else MessageStatus.COMPLETE
        metadata = dict(message.metadata or {})
        if result.tool_calls:
            metadata["tool_calls"] = [
                {"id": c.id, "name": c.name, "arguments": c.arguments} for c in result.tool_calls
            ]
        with transaction.atomic():
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
