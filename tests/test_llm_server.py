"""Tests for the fake OpenAI server, driven by the real ``openai`` client."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.support.llm_server import LLMServer, ToolCall, echo

MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as srv:
        yield srv


def client(server: LLMServer, **kw: object) -> openai.OpenAI:
    kw.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=server.base_url, api_key="x", **kw)  # type: ignore[arg-type]


def test_streaming_text_with_usage(server: LLMServer) -> None:
    server.script.reply("Hello streaming world", chunks=3, delay=0.001)
    stream = client(server).chat.completions.create(
        model="m1",
        messages=MSGS,
        stream=True,
        stream_options={"include_usage": True},  # type: ignore[arg-type]
    )
    chunks = list(stream)
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert deltas == ["Hello s", "treamin", "g world"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    usage = chunks[-1].usage
    assert usage.completion_tokens == 3 and usage.total_tokens == usage.prompt_tokens + 3
    req = server.requests[0]
    assert req.body is not None and req.body["model"] == "m1" and req.stream and req.messages == MSGS
    assert req.headers["authorization"] == "Bearer x"


def test_default_echo_and_non_streamed(server: LLMServer) -> None:
    resp = client(server).chat.completions.create(model="m", messages=MSGS)  # type: ignore[arg-type]
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.content == "You said: hello there"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.completion_tokens == 4
    assert server.wait_for_requests(1)[0].stream is False


def test_default_tokens_and_models() -> None:
    with LLMServer(tokens=20) as srv:
        c = client(srv)
        stream = c.chat.completions.create(model="m", messages=MSGS, stream=True)  # type: ignore[arg-type]
        text = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
        assert len(text.split()) == 20 and text.startswith("You said: hello there w0")
        assert "test-model" in [m.id for m in c.models.list()]


def test_parallel_tool_calls_streamed(server: LLMServer) -> None:
    server.script.tool_calls(
        ToolCall("get_weather", {"city": "Paris", "unit": "c"}, id="call_1"),
        ("search", {"q": "news today"}),
        chunks=4,
    )
    tools = [
        {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
        for n in ("get_weather", "search")
    ]
    with client(server).chat.completions.stream(model="m", messages=MSGS, tools=tools) as stream:  # type: ignore[arg-type]
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name) for c in calls][0] == ("call_1", "get_weather")  # type: ignore[union-attr]
    assert [json.loads(c.function.arguments) for c in calls] == [  # type: ignore[union-attr]
        {"city": "Paris", "unit": "c"},
        {"q": "news today"},
    ]
    assert server.requests[0].body["tools"] == tools  # type: ignore[index]


def test_tool_calls_non_streamed(server: LLMServer) -> None:
    server.script.tool_call("lookup", {"id": 7})
    resp = client(server).chat.completions.create(model="m", messages=MSGS)  # type: ignore[arg-type]
    (call,) = resp.choices[0].message.tool_calls or []
    assert call.function.name == "lookup" and json.loads(call.function.arguments) == {"id": 7}  # type: ignore[union-attr]
    assert resp.choices[0].finish_reason == "tool_calls"


def test_server_error(server: LLMServer) -> None:
    server.script.error(500)
    with pytest.raises(openai.InternalServerError) as exc:
        client(server).chat.completions.create(model="m", messages=MSGS)  # type: ignore[arg-type]
    assert exc.value.status_code == 500 and exc.value.type == "server_error"


def test_context_length_exceeded(server: LLMServer) -> None:
    server.script.context_length_exceeded()
    with pytest.raises(openai.BadRequestError) as exc:
        client(server).chat.completions.create(model="m", messages=MSGS, stream=True)  # type: ignore[arg-type]
    assert exc.value.code == "context_length_exceeded"


def test_rate_limit_with_retry_after(server: LLMServer) -> None:
    server.script.rate_limit(retry_after=7)
    with pytest.raises(openai.RateLimitError) as exc:
        client(server).chat.completions.create(model="m", messages=MSGS)  # type: ignore[arg-type]
    assert exc.value.response.headers["retry-after"] == "7"
    assert exc.value.code == "rate_limit_exceeded"


def test_retries_then_succeeds(server: LLMServer) -> None:
    # The client's own retry loop honours Retry-After and ends up on the next scripted reply.
    server.script.rate_limit(retry_after=0).reply("finally")
    resp = client(server, max_retries=2).chat.completions.create(model="m", messages=MSGS)  # type: ignore[arg-type]
    assert resp.choices[0].message.content == "finally" and len(server.requests) == 2


def test_hang_times_out(server: LLMServer) -> None:
    server.script.hang()
    with pytest.raises(openai.APITimeoutError):
        client(server, timeout=0.3).chat.completions.create(model="m", messages=MSGS)  # type: ignore[arg-type]


def test_hang_mid_stream_times_out(server: LLMServer) -> None:
    server.script.hang(partial="first words")
    stream = client(server, timeout=0.3).chat.completions.create(
        model="m",
        messages=MSGS,
        stream=True,  # type: ignore[arg-type]
    )
    with pytest.raises(openai.APITimeoutError):
        list(stream)


def test_malformed_chunk(server: LLMServer) -> None:
    server.script.malformed()
    stream = client(server).chat.completions.create(model="m", messages=MSGS, stream=True)  # type: ignore[arg-type]
    got: list[str] = []
    with pytest.raises(json.JSONDecodeError):
        for chunk in stream:
            got.append(chunk.choices[0].delta.content or "")
    assert "".join(got) == "This "


def test_dropped_connection(server: LLMServer) -> None:
    server.script.drop(after_chunks=2)
    stream = client(server).chat.completions.create(model="m", messages=MSGS, stream=True)  # type: ignore[arg-type]
    got: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            got.append(chunk.choices[0].delta.content or "")
    assert "".join(got) == "This stream "


def test_predicate_scripts_and_reset(server: LLMServer) -> None:
    server.script.reply("for bob", match=lambda b: b.get("user") == "bob").reply("anyone")
    c = client(server)
    first = c.chat.completions.create(model="m", messages=MSGS)  # type: ignore[arg-type]
    second = c.chat.completions.create(model="m", messages=MSGS, user="bob")  # type: ignore[arg-type]
    assert (first.choices[0].message.content, second.choices[0].message.content) == ("anyone", "for bob")
    server.script.reply("unused")
    server.reset()
    assert server.requests == [] and server.script.pending() == 0


def test_fifty_concurrent_streams(server: LLMServer) -> None:
    c = client(server)
    results: dict[int, str] = {}

    def run(i: int) -> None:
        msgs = [{"role": "user", "content": f"request {i}"}]
        stream = c.chat.completions.create(model="m", messages=msgs, stream=True)  # type: ignore[arg-type]
        results[i] = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)

    # Per-chunk delay keeps all 50 streams open at the same time.
    server.set_default(echo(delay=0.05))
    threads = [threading.Thread(target=run, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == {i: f"You said: request {i}" for i in range(50)}


def test_stop_releases_hanging_request() -> None:
    srv = LLMServer().start()
    srv.script.hang()
    errors: list[BaseException] = []

    def call() -> None:
        try:
            client(srv, timeout=10).chat.completions.create(model="m", messages=MSGS)  # type: ignore[arg-type]
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=call)
    t.start()
    srv.wait_for_requests(1)
    srv.stop()
    t.join(timeout=5)
    assert not t.is_alive() and isinstance(errors[0], openai.APIConnectionError)


def test_cli_process() -> None:
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.llm_server", "--port", "0", "--tokens", "5", "--delay-ms", "1"],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        c = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)
        resp = c.chat.completions.create(model="m", messages=MSGS)  # type: ignore[arg-type]
        assert resp.choices[0].message.content == "You said: hello there w0"
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0
