"""A scriptable, OpenAI-compatible chat-completions server for tests and benchmarks.

Speaks the real wire protocol (JSON + SSE over HTTP/1.1 chunked encoding) so the unmodified
``openai`` client can talk to it. Standard library only.

    with LLMServer() as server:
        server.script.reply("Hello world", delay=0.01)
        client = openai.OpenAI(base_url=server.base_url, api_key="x")

CLI: ``python -m tests.support.llm_server --port 0 --tokens 200 --delay-ms 5`` prints the base URL
on its first stdout line and serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

Body = dict[str, Any]
Predicate = Callable[[Body], bool]


def count_tokens(text: str) -> int:
    """Rough token count: words and punctuation marks."""
    return len(re.findall(r"\w+|[^\w\s]", text))


def _text_of(content: Any) -> str:
    # Message content is either a string or a list of typed parts.
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _split(text: str, chunks: int | list[str] | None) -> list[str]:
    """Split text into deltas: word by word (None), N near-equal pieces (int), or explicit pieces."""
    if isinstance(chunks, list):
        return chunks
    if chunks is None:
        return re.findall(r"\S+\s*|\s+", text) or [""]
    n = max(1, min(chunks, len(text) or 1))
    size, extra = divmod(len(text), n)
    out, pos = [], 0
    for i in range(n):
        end = pos + size + (1 if i < extra else 0)
        out.append(text[pos:end])
        pos = end
    return out


# --- Script kinds ----------------------------------------------------------------------------------


@dataclass
class Reply:
    """A text reply, streamed as ``chunks`` deltas with ``delay`` seconds between them."""

    text: str
    chunks: int | list[str] | None = None
    delay: float = 0.0
    finish_reason: str = "stop"
    usage: dict[str, int] | None = None  # overrides the computed usage
    match: Predicate | None = field(default=None, repr=False)


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def args_json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass
class ToolCalls:
    """One assistant turn with one or more tool calls; arguments are streamed in ``chunks`` fragments."""

    calls: list[ToolCall]
    content: str | None = None
    chunks: int = 3
    delay: float = 0.0
    match: Predicate | None = field(default=None, repr=False)


@dataclass
class Error:
    """An HTTP error with an OpenAI-shaped JSON body."""

    status: int = 500
    message: str = "The server had an error while processing your request."
    type: str = "server_error"
    code: str | None = None
    retry_after: float | None = None
    match: Predicate | None = field(default=None, repr=False)


@dataclass
class Hang:
    """Stream ``partial`` (if any), then never answer until ``seconds`` pass or the server stops."""

    seconds: float | None = None
    partial: str = ""
    match: Predicate | None = field(default=None, repr=False)


@dataclass
class Malformed:
    """A stream with an invalid JSON chunk after the text's first ``after_chunks`` deltas."""

    text: str = "This stream is broken"
    after_chunks: int = 1
    match: Predicate | None = field(default=None, repr=False)


@dataclass
class Drop:
    """Stream ``after_chunks`` deltas of ``text``, then close the connection abruptly (no [DONE])."""

    text: str = "This stream is cut off mid way"
    after_chunks: int = 2
    match: Predicate | None = field(default=None, repr=False)


Response = Reply | ToolCalls | Error | Hang | Malformed | Drop
KINDS: dict[str, type] = {c.__name__.lower(): c for c in (Reply, ToolCalls, Error, Hang, Malformed, Drop)}


def response_from_dict(data: Body) -> Response:
    """Build a script from JSON, e.g. ``{"kind": "reply", "text": "hi"}`` (used by the control API)."""
    data = dict(data)
    kind = KINDS[data.pop("kind")]
    if kind is ToolCalls:
        data["calls"] = [ToolCall(**c) for c in data["calls"]]
    return kind(**data)


class Script:
    """Thread-safe queue of scripted responses; each is consumed by exactly one request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[Response] = []

    def add(self, *responses: Response) -> Script:
        with self._lock:
            self._queue.extend(responses)
        return self

    def reply(self, text: str, **kw: Any) -> Script:
        return self.add(Reply(text, **kw))

    def tool_calls(self, *calls: ToolCall | tuple[str, dict[str, Any] | str], **kw: Any) -> Script:
        parsed = [c if isinstance(c, ToolCall) else ToolCall(*c) for c in calls]
        return self.add(ToolCalls(parsed, **kw))

    def tool_call(self, name: str, arguments: dict[str, Any] | str | None = None, **kw: Any) -> Script:
        return self.tool_calls(ToolCall(name, arguments or {}), **kw)

    def error(self, status: int = 500, **kw: Any) -> Script:
        return self.add(Error(status, **kw))

    def rate_limit(self, retry_after: float = 1, **kw: Any) -> Script:
        kw.setdefault("message", "Rate limit reached for requests.")
        kw.update(type="requests", code="rate_limit_exceeded", retry_after=retry_after)
        return self.add(Error(429, **kw))

    def context_length_exceeded(self, **kw: Any) -> Script:
        kw.setdefault("message", "This model's maximum context length is 8192 tokens.")
        return self.add(Error(400, type="invalid_request_error", code="context_length_exceeded", **kw))

    def hang(self, seconds: float | None = None, **kw: Any) -> Script:
        return self.add(Hang(seconds, **kw))

    def malformed(self, **kw: Any) -> Script:
        return self.add(Malformed(**kw))

    def drop(self, **kw: Any) -> Script:
        return self.add(Drop(**kw))

    def pop(self, body: Body) -> Response | None:
        """Remove and return the first queued response whose predicate (if any) accepts ``body``."""
        with self._lock:
            for i, resp in enumerate(self._queue):
                if resp.match is None or resp.match(body):
                    return self._queue.pop(i)
        return None

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Body | None
    time: float

    @property
    def messages(self) -> list[Body]:
        return (self.body or {}).get("messages", [])

    @property
    def stream(self) -> bool:
        return bool((self.body or {}).get("stream"))


def echo(tokens: int | None = None, delay: float = 0.0) -> Callable[[Body], Response]:
    """Default behaviour: "You said: <last user message>" word by word, padded/cut to ``tokens`` words."""

    def respond(body: Body) -> Response:
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        words = f"You said: {_text_of(users[-1].get('content')) if users else ''}".split()
        if tokens is not None:
            words = (words + [f"w{i}" for i in range(max(0, tokens - len(words)))])[:tokens]
        return Reply(" ".join(words), delay=delay)

    return respond


# --- HTTP ------------------------------------------------------------------------------------------


def _usage(prompt: int, completion: int) -> Body:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _error_body(message: str, type_: str, code: str | None) -> Body:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


class _Aborted(Exception):
    """Client went away or the server is stopping; abandon this response."""


# Chat completions as OpenAI serves them, and as Azure OpenAI does (the deployment in the path, the API
# version in the query string).
_CHAT_PATH = re.compile(r"^(/v1|/openai/deployments/[^/]+)/chat/completions/?$")


def _is_chat_path(path: str) -> bool:
    return bool(_CHAT_PATH.match(urlsplit(path).path))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive + chunked streaming, like the real API
    disable_nagle_algorithm = True  # each SSE event leaves at once, not after the client's delayed ACK
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        self.server.owner._track(self.connection, add=False)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.owner.verbose:
            super().log_message(format, *args)

    # -- plumbing --

    def _read_json(self) -> Body | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex[:16]}")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        except OSError as exc:
            raise _Aborted from exc

    def _event(self, payload: Any) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self._chunk(b"data: " + data + b"\n\n")

    def _sleep(self, seconds: float | None) -> None:
        # Wait on the stop event (not time.sleep) so stop() releases slow and hanging responses at once.
        if (seconds is None or seconds > 0) and self.server.owner._stopping.wait(seconds):
            raise _Aborted

    def _abort_connection(self) -> None:
        # shutdown() sends FIN without a terminating chunk: the client sees an incomplete body.
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- routes --

    def do_GET(self) -> None:
        owner = self.server.owner
        if self.path.rstrip("/") == "/v1/models":
            owner._record(self, None)
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in owner.models]
            self._send_json(200, {"object": "list", "data": data})
        elif self.path == "/_control/requests":
            self._send_json(200, [r.__dict__ for r in owner.requests])
        else:
            self._send_json(404, _error_body(f"Unknown path {self.path}", "invalid_request_error", "404"))

    def do_POST(self) -> None:
        owner = self.server.owner
        body = self._read_json()
        if self.path == "/_control/script":
            items = body if isinstance(body, list) else [body]
            owner.script.add(*(response_from_dict(d) for d in items))
            return self._send_json(200, {"pending": owner.script.pending()})
        if self.path == "/_control/reset":
            owner.reset()
            return self._send_json(200, {})
        if not _is_chat_path(self.path):
            return self.do_GET()
        owner._record(self, body)
        if body is None:
            return self._send_json(400, _error_body("Invalid JSON body", "invalid_request_error", None))
        resp = owner.script.pop(body) or owner.default(body)
        try:
            self._respond(resp, body)
        except _Aborted:
            self._abort_connection()

    def _respond(self, resp: Response, body: Body) -> None:
        if isinstance(resp, Error):
            headers = {"Retry-After": f"{resp.retry_after:g}"} if resp.retry_after is not None else {}
            return self._send_json(resp.status, _error_body(resp.message, resp.type, resp.code), headers)
        stream = bool(body.get("stream"))
        model = body.get("model") or "test-model"
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_test",
        }
        prompt = sum(count_tokens(_text_of(m.get("content"))) + 3 for m in body.get("messages", []))

        if isinstance(resp, Hang):
            if stream and resp.partial:
                self._start_stream()
                for piece in _split(resp.partial, None):
                    self._event(self._delta(base, {"content": piece}))
            self._sleep(resp.seconds)
            raise _Aborted  # duration over: give up without ever finishing the response

        if isinstance(resp, ToolCalls):
            calls = [(c.id or f"call_{uuid.uuid4().hex[:24]}", c.name, c.args_json()) for c in resp.calls]
            text = (resp.content or "") + " ".join(name + " " + args for _, name, args in calls)
            usage = _usage(prompt, count_tokens(text))
            msg: Body = {"role": "assistant", "content": resp.content, "refusal": None}
            if not stream:
                fns = [(cid, {"name": name, "arguments": args}) for cid, name, args in calls]
                msg["tool_calls"] = [{"id": cid, "type": "function", "function": fn} for cid, fn in fns]
                return self._send_json(200, self._completion(base, msg, "tool_calls", usage))
            self._start_stream()
            self._event(self._delta(base, msg))
            for i, (cid, name, args) in enumerate(calls):
                # First delta names the call; later ones only carry argument fragments, as OpenAI does.
                fn = {"name": name, "arguments": ""}
                head = {"index": i, "id": cid, "type": "function", "function": fn}
                self._event(self._delta(base, {"tool_calls": [head]}))
                for frag in _split(args, resp.chunks):
                    self._sleep(resp.delay)
                    more = {"index": i, "function": {"arguments": frag}}
                    self._event(self._delta(base, {"tool_calls": [more]}))
            return self._finish_stream(base, body, "tool_calls", usage)

        # Reply, Malformed and Drop all stream text; they differ in how the stream ends.
        text = resp.text
        pieces = _split(text, resp.chunks if isinstance(resp, Reply) else None)
        # Word-by-word replies count one token per delta, so `--tokens N` reports exactly N.
        is_words = not isinstance(resp, Reply) or resp.chunks is None
        usage = _usage(prompt, len(pieces) if is_words else count_tokens(text))
        if isinstance(resp, Reply) and resp.usage:
            usage = resp.usage
        finish = resp.finish_reason if isinstance(resp, Reply) else "stop"
        if not stream:
            if isinstance(resp, Malformed | Drop):
                # Malformed: truncated JSON. Drop: Content-Length promises more than is sent before closing.
                data = b'{"id": "chatcmpl-broken", '
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data) if isinstance(resp, Malformed) else 1000))
                self.end_headers()
                self.wfile.write(data)
                if isinstance(resp, Drop):
                    raise _Aborted
                return
            msg = {"role": "assistant", "content": text, "refusal": None}
            return self._send_json(200, self._completion(base, msg, finish, usage))
        self._start_stream()
        self._event(self._delta(base, {"role": "assistant", "content": "", "refusal": None}))
        for i, piece in enumerate(pieces):
            if isinstance(resp, Drop) and i == resp.after_chunks:
                raise _Aborted
            if isinstance(resp, Malformed) and i == resp.after_chunks:
                self._event(b'{"id": "chatcmpl-broken", "choices": [{"delta": {"content": "oops"')
            if isinstance(resp, Reply):
                self._sleep(resp.delay)
            self._event(self._delta(base, {"content": piece}))
        self._finish_stream(base, body, finish, usage)

    @staticmethod
    def _delta(base: Body, delta: Body, finish: str | None = None) -> Body:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**base, "object": "chat.completion.chunk", "choices": [choice]}

    @staticmethod
    def _completion(base: Body, message: Body, finish: str, usage: Body) -> Body:
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        return {**base, "object": "chat.completion", "choices": [choice], "usage": usage}

    def _finish_stream(self, base: Body, body: Body, finish: str, usage: Body) -> None:
        self._event(self._delta(base, {}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            self._event({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        self._event(b"[DONE]")
        self._chunk(b"")  # zero-length chunk terminates the chunked body


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # don't join handler threads (hung ones) on close
    request_queue_size = 256  # default backlog of 5 stalls bursts of concurrent connections
    owner: LLMServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-response is expected in these tests; stay quiet about it.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class LLMServer:
    """OpenAI-compatible server running in a background thread on a loopback port."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tokens: int | None = None,
        delay: float = 0.0,
        models: list[str] | None = None,
        verbose: bool = False,
    ) -> None:
        self.host, self.port, self.verbose = host, port, verbose
        self.models = models or ["test-model", "gpt-4o-mini"]
        self.script = Script()
        self.default: Callable[[Body], Response] = echo(tokens, delay)
        self._requests: list[RecordedRequest] = []
        self._cond = threading.Condition()
        self._conns: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> LLMServer:
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self.port), _Handler)
        self._httpd.owner = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"llm-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases hanging / sleeping responses
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        with self._cond:
            conns, self._conns = list(self._conns), set()
        for conn in conns:  # unblock keep-alive handler threads waiting for the next request
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_default(self, response: Response | Callable[[Body], Response]) -> None:
        """Set the reply used when no script matches: a fixed response or a function of the request body."""
        self.default = response if callable(response) else (lambda body: response)

    def reset(self) -> None:
        """Forget recorded requests and pending scripts."""
        self.script.clear()
        with self._cond:
            self._requests.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._cond:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if _is_chat_path(r.path)]

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least ``n`` requests were received; raise TimeoutError otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._requests) >= n, timeout):
                raise TimeoutError(f"expected {n} requests, got {len(self._requests)}")
            return list(self._requests)

    def _record(self, handler: _Handler, body: Body | None) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}  # lower-case keys: predictable lookups
        req = RecordedRequest(handler.command, handler.path, headers, body, time.time())
        with self._cond:
            self._requests.append(req)
            self._cond.notify_all()

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._cond:
            (self._conns.add if add else self._conns.discard)(conn)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--tokens", type=int, default=None, help="words per default reply (default: echo)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="delay between streamed chunks")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    server = LLMServer(
        args.host, args.port, tokens=args.tokens, delay=args.delay_ms / 1000, verbose=args.verbose
    )
    server.start()
    print(server.base_url, flush=True)
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    server.stop()


if __name__ == "__main__":
    main()
