"""``/metrics``: not public, Prometheus text format, and the counters move when work happens.

Counters and histograms live in prometheus_client's multiprocess files (``PROMETHEUS_MULTIPROC_DIR``,
under ``DATA_DIR``), which keep what earlier processes counted; so the tests compare a scrape before
and after the work. Gauges are computed from the database at scrape time.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client import values
from prometheus_client.parser import text_string_to_metric_families

from core.tenancy import tenant_context
from sessions_app.models import Run, Session, SessionStatus
from sessions_app.services.lifecycle import session_create
from sessions_app.services.runs import run_cancel, run_claim, runs_reap
from tests.conftest import make_user
from tests.support.runtime import post, post_and_run, task_queue_fixture  # noqa: F401
from tools_app.models import ToolCall

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("task_queue")]

TOKEN = "metrics-token-0123456789"


@pytest.fixture(autouse=True)
def metrics_settings(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.LLM_PROVIDER = "demo"
    settings.DEMO_TOKEN_DELAY_MS = 0


def scrape() -> dict[tuple[str, tuple], float]:
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def delta(before: dict, after: dict, name: str, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_need_a_token_or_a_staff_login(world, settings):
    anonymous = Client().get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "AUTHENTICATION_REQUIRED"
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    member = Client()
    member.force_login(world.a.owner)  # an organization owner is not site staff
    assert member.get("/metrics").status_code == 401

    ok = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert ok.status_code == 200 and ok["Content-Type"].startswith("text/plain")
    staff = Client()
    staff.force_login(make_user("operator", is_staff=True))
    assert staff.get("/metrics").status_code == 200

    settings.METRICS_TOKEN = ""  # no token configured: none is accepted, not even an empty one
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_the_worker_side_writes_to_the_shared_multiprocess_files():
    assert "MultiProcessValue" in values.ValueClass.__qualname__


def test_counters_and_histograms_after_a_run_with_a_tool(world):
    with tenant_context(world.a.org):
        world.a.agent.tools = ["calculator"]
        world.a.agent.save()
    before = scrape()
    with tenant_context(world.a.org):
        session = session_create(organization=world.a.org, agent=world.a.agent, owner=world.a.member)
    _, run = post_and_run(world.a, "calculate 6*7", session=session)
    assert run.status == "completed"
    after = scrape()

    assert delta(before, after, "switchboard_sessions_created_total") == 1
    assert delta(before, after, "switchboard_messages_total", role="user") == 1
    assert delta(before, after, "switchboard_messages_total", role="assistant") == 2
    assert delta(before, after, "switchboard_messages_total", role="tool") == 1
    assert delta(before, after, "switchboard_runs_total", outcome="completed", error_code="") == 1
    assert delta(before, after, "switchboard_tokens_total", direction="in") == run.prompt_tokens > 0
    assert delta(before, after, "switchboard_tokens_total", direction="out") == run.completion_tokens > 0
    assert delta(before, after, "switchboard_llm_response_seconds_count") == 2  # asked, then answered
    assert delta(before, after, "switchboard_llm_response_seconds_sum") > 0
    assert delta(before, after, "switchboard_time_to_first_token_seconds_count") == 1
    assert delta(before, after, "switchboard_tool_calls_total", tool="calculator", status="completed") == 1
    assert delta(before, after, "switchboard_tool_execution_seconds_count", tool="calculator") == 1


def test_runs_are_counted_by_outcome_wherever_they_end(world, settings):
    settings.RUN_MAX_ATTEMPTS = 1
    before = scrape()
    _, cancelled = post(world.a, "never mind")
    with tenant_context(world.a.org):
        run_cancel(Run.objects.get(pk=cancelled.pk))  # no worker involved
        other = session_create(organization=world.a.org, agent=world.a.agent, owner=world.a.member)
    _, lost = post(world.a, "the worker dies", session=other)
    with tenant_context(world.a.org):
        run_claim(lost.pk, "host:1")
        Run.objects.filter(pk=lost.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    runs_reap()  # the reaper fails it: out of attempts
    after = scrape()
    assert delta(before, after, "switchboard_runs_total", outcome="cancelled", error_code="") == 1
    assert delta(before, after, "switchboard_runs_total", outcome="failed", error_code="INTERNAL_ERROR") == 1


def test_gauges_describe_the_current_state(world):
    with tenant_context(world.a.org):
        world.a.agent.tools = ["calculator"]
        world.a.agent.approval_mode = "manual"
        world.a.agent.save()
    _, run = post_and_run(world.a, "calculate 1+1")
    _, queued = post(world.b)
    assert run.status == "requires_action"
    samples = scrape()
    active = Session.all_tenants_unsafe.filter(status=SessionStatus.ACTIVE).count()
    assert active == 2
    assert samples[("switchboard_active_sessions", ())] == active
    pending = ToolCall.all_tenants_unsafe.filter(status="pending", requires_approval=True).count()
    assert pending == 1 and samples[("switchboard_pending_approvals", ())] == 1
    assert samples[("switchboard_runs_active", (("status", "requires_action"),))] == 1
    assert samples[("switchboard_runs_active", (("status", "queued"),))] == 1
    depth = samples[("switchboard_queue_depth", ())]
    assert depth >= 0 and depth == int(depth)
