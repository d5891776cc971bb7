"""A message's life through real processes: REST in, a queue worker out, websocket and SSE to the client.

The reply is produced in the cluster's worker process and reaches clients held by Daphne: through
channels-redis with Redis, through the event log with the in-memory layer. Whatever the path, each client
gets the session's log exactly: every event once, in ``seq`` order.
"""

from __future__ import annotations

import os
import signal

import httpx
from django.utils import timezone
from django_q.models import Schedule
from prometheus_client.parser import text_string_to_metric_families

from core.tenancy import tenant_context
from sessions_app.models import Run
from tests.e2e.conftest import METRICS_TOKEN, assert_in_order, reply_of, wait_until


def words(prefix: str, count: int) -> str:
    return " ".join(f"{prefix}{i}" for i in range(count))


def chunk_or_end(index: int):
    """The ``index``-th chunk (or the end of the stream, should a loaded machine coalesce it into fewer)."""
    return lambda f: (
        (f.get("type") == "stream.chunk" and f["data"]["index"] >= index) or (f.get("type") == "stream.ended")
    )


def worker_pid(run: dict) -> int:
    return int(run["worker"].rsplit(":", 1)[1])


def test_reply_reaches_websocket_and_sse_in_order(tenant, llm, stack):
    session = tenant.create_session()
    ws = tenant.websocket(session, after=0)
    sse = tenant.sse(session, after=0)
    text = words("token", 40)
    llm.script.reply(text, delay=0.01)

    response = tenant.post_message(session, "Tell me forty words")
    assert response.status_code == 201, response.text
    run = tenant.wait_run(session, response.json()["run"]["id"])
    assert run["status"] == "completed"
    assert worker_pid(run) in stack.cluster_workers()  # streamed by the queue, not by Daphne

    log = tenant.log(session)
    assert_in_order(log)
    last = log[-1]["seq"]
    assert ws.wait_seq(last) == log
    assert sse.wait_seq(last) == log
    types = [e["type"] for e in log]
    assert types[0] == "session.created"
    tail = types[types.index("run.queued") :]
    assert tail[:3] == ["run.queued", "worker.spawned", "run.started"]
    assert tail.index("stream.started") < tail.index("stream.chunk") < tail.index("stream.ended")
    assert "run.completed" in tail and "worker.completed" in tail

    assert reply_of(log) == text
    messages = tenant.messages(session)
    assert [(m["role"], m["status"]) for m in messages] == [("user", "complete"), ("assistant", "complete")]
    assert messages[1]["content"] == text
    request = llm.chat_requests[-1]
    assert request.body["messages"][-1] == {"role": "user", "content": "Tell me forty words"}


def test_cancel_mid_stream_keeps_the_partial_reply(tenant, llm):
    session = tenant.create_session()
    ws = tenant.websocket(session, after=0)
    text = words("long", 400)
    llm.script.reply(text, delay=0.03)  # twelve seconds if nobody stopped it

    response = tenant.post_message(session, "Talk for a long time")
    run_id = response.json()["run"]["id"]
    ws.wait_type("stream.chunk")
    ws.send({"type": "run.cancel", "run": run_id, "id": "stop"})
    ack = ws.wait_for(lambda f: f.get("ref") == "stop", "the cancel's answer")
    assert ack["type"] == "ack" and ack["runs"][0]["id"] == run_id
    terminal = ws.wait_type("run.cancelled")
    assert terminal["run"] == run_id

    run = tenant.wait_run(session, run_id)
    assert run["status"] == "cancelled"
    log = tenant.log(session)
    assert_in_order(log)
    assert ws.wait_seq(log[-1]["seq"]) == log
    ended = [e for e in log if e["type"] == "stream.ended"]
    assert len(ended) == 1 and ended[0]["data"]["reason"] == "cancelled"
    reply = [m for m in tenant.messages(session) if m["role"] == "assistant"]
    assert len(reply) == 1 and reply[0]["status"] == "cancelled"
    partial = reply[0]["content"]
    assert partial and text.startswith(partial) and len(partial) < len(text)
    assert reply_of(log) == partial
    # Cancelling again is harmless and changes nothing.
    again = tenant.api.post(tenant.path(f"sessions/{session}/runs/{run_id}/cancel/"))
    assert again.status_code == 202 and again.json()["status"] == "cancelled"
    assert tenant.log(session) == log


def test_disconnect_mid_stream_and_resume(tenant, llm):
    session = tenant.create_session()
    text = words("piece", 120)
    llm.script.reply(text, delay=0.02)
    first_ws = tenant.websocket(session, after=0)
    first_sse = tenant.sse(session, after=0)

    run_id = tenant.post_message(session, "Stream a while").json()["run"]["id"]
    first_ws.wait_for(chunk_or_end(2), "chunk 2")
    first_ws.close()
    first_sse.wait_for(chunk_or_end(3), "chunk 3")
    first_sse.close()
    seen_ws, seen_sse = first_ws.events, first_sse.events
    assert_in_order(seen_ws)
    assert_in_order(seen_sse)

    # Reconnect while the reply is still streaming: the websocket with after=, SSE with Last-Event-ID.
    second_ws = tenant.websocket(session, after=seen_ws[-1]["seq"])
    second_sse = tenant.sse(session, after=None, last_event_id=seen_sse[-1]["seq"])
    assert tenant.wait_run(session, run_id)["status"] == "completed"
    log = tenant.log(session)
    last = log[-1]["seq"]
    assert seen_ws + second_ws.wait_seq(last) == log
    assert seen_sse + second_sse.wait_seq(last) == log
    assert reply_of(seen_ws + second_ws.events) == text
    assert [m["content"] for m in tenant.messages(session) if m["role"] == "assistant"] == [text]


def test_stateless_wait_through_the_worker(tenant, llm, stack):
    session = tenant.create_session()
    llm.script.reply("A complete answer in one call.", delay=0.01)
    response = tenant.post_message(session, "Answer me now", wait=True)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["run"]["status"] == "completed"
    assert body["reply"]["role"] == "assistant"
    assert body["reply"]["content"] == "A complete answer in one call."
    assert body["reply"]["status"] == "complete"
    assert worker_pid(body["run"]) in stack.cluster_workers()


def test_worker_killed_mid_run_is_recovered_by_the_reaper(tenant, llm, stack):
    session = tenant.create_session()
    ws = tenant.websocket(session, after=0)
    llm.script.reply(words("doomed", 400), delay=0.05)  # still streaming when its worker dies
    llm.script.reply("Recovered after the worker was lost.", delay=0.01)

    response = tenant.post_message(session, "Survive this")
    user_message, run_id = response.json()["message"], response.json()["run"]["id"]
    ws.wait_type("stream.chunk")
    dead_worker = tenant.run(session, run_id)["worker"]
    victim = int(dead_worker.rsplit(":", 1)[1])
    workers_before = stack.cluster_workers()
    assert victim in workers_before  # one of the cluster's own worker processes
    os.kill(victim, signal.SIGKILL)

    with tenant_context(tenant.org):
        wait_until(
            lambda: Run.objects.filter(pk=run_id, lease_expires_at__lt=timezone.now()).exists(),
            "the dead worker's lease to lapse",
        )
    # The guard replaces the dead worker; the scheduled reaper (registered at migrate) finds the run.
    # Its next turn is brought forward so the cluster's scheduler (every ~30 s) runs it on its next tick.
    assert Schedule.objects.filter(func="sessions_app.tasks.runs_reap", repeats=-1).update(
        next_run=timezone.now()
    )
    wait_until(lambda: set(stack.cluster_workers()) - set(workers_before), "a replacement worker")
    run = tenant.wait_run(session, run_id)
    assert run["status"] == "completed"
    assert run["attempts"] == 2

    log = tenant.log(session)
    assert_in_order(log)
    assert ws.wait_seq(log[-1]["seq"]) == log  # the websocket stayed open across the whole outage
    stalled = [e for e in log if e["type"] == "worker.stalled"]
    assert len(stalled) == 1 and stalled[0]["data"]["worker"] == dead_worker
    spawned = [e["data"]["attempt"] for e in log if e["type"] == "worker.spawned"]
    assert spawned == [1, 2]
    assert log.index(stalled[0]) < [i for i, e in enumerate(log) if e["type"] == "worker.spawned"][1]

    messages = tenant.messages(session)
    users = [m for m in messages if m["role"] == "user"]
    replies = [m for m in messages if m["role"] == "assistant"]
    assert [(m["id"], m["content"]) for m in users] == [(user_message["id"], "Survive this")]
    assert len(replies) == 1
    assert replies[0]["content"] == "Recovered after the worker was lost."
    assert replies[0]["status"] == "complete"
    # A client that starts over at the retry's stream.started gets exactly the stored reply.
    restart = max(i for i, e in enumerate(log) if e["type"] == "stream.started")
    assert log[restart]["data"]["attempt"] == 2
    assert reply_of(log[restart:]) == replies[0]["content"]


def scrape(stack, token: str | None = METRICS_TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(stack.base_url + "/metrics", headers=headers, timeout=30)


def metric(stack, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` with these labels, as Daphne's ``/metrics`` reports them."""
    response = scrape(stack)
    assert response.status_code == 200, response.text
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def test_metrics_counted_in_the_queue_worker_reach_the_servers_endpoint(tenant, llm, stack):
    """A run's outcome, time to first token and tokens are counted in the queue worker process; Daphne's
    ``/metrics`` reports them (prometheus-client's multiprocess mode), and only to an authorized scraper."""
    assert scrape(stack, token=None).status_code in (401, 403)
    assert scrape(stack, token="wrong").status_code in (401, 403)
    before = {
        "completed": metric(stack, "switchboard_runs_total", outcome="completed"),
        "ttft": metric(stack, "switchboard_time_to_first_token_seconds_count"),
        "tokens_out": metric(stack, "switchboard_tokens_total", direction="out"),
        "sessions": metric(stack, "switchboard_sessions_created_total"),
    }
    session = tenant.create_session()
    llm.script.reply(words("counted", 12))
    response = tenant.post_message(session, "Count this")
    assert response.status_code == 201, response.text
    run = tenant.wait_run(session, response.json()["run"]["id"])
    assert run["status"] == "completed"
    assert worker_pid(run) in stack.cluster_workers()  # counted in a queue worker, not in Daphne

    # The run's counters are raised after its last commit: wait for them rather than race the worker.
    wait_until(
        lambda: metric(stack, "switchboard_runs_total", outcome="completed") >= before["completed"] + 1,
        "the completed run in /metrics",
    )
    assert metric(stack, "switchboard_time_to_first_token_seconds_count") >= before["ttft"] + 1
    assert metric(stack, "switchboard_tokens_total", direction="out") >= before["tokens_out"] + 1
    assert metric(stack, "switchboard_sessions_created_total") >= before["sessions"] + 1
