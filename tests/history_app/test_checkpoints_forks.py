"""Checkpoints and forks: state captured at an event seq, new sessions from it, the original untouched."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from core.errors import SwitchboardError
from core.tenancy import tenant_context
from history_app.services.attachments import attachments_add
from history_app.services.checkpoints import checkpoint_create, checkpoint_state, session_fork
from sessions_app.models import Attachment, Checkpoint, Message, Session, SessionEvent, Tag
from sessions_app.services.lifecycle import session_update
from tests.history_app.builders import add_message, add_tool_call, new_session
from tests.support.assertions import assert_error
from tools_app.models import ToolCall


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def history(world):
    """world.a.session: user, assistant (asks a tool), tool answer, assistant; config and a tag."""
    a, s = world.a, world.a.session
    with tenant_context(a.org):
        Tag.objects.create(organization=a.org, name="research")
        session_update(s, config={"temperature": 0.5}, tags=[Tag.objects.get(name="research")])
    m1 = add_message(a, "What is 6 times 7?")
    m2 = add_message(a, "Let me calculate.", role="assistant")
    call = add_tool_call(
        a,
        message=m2,
        call_id="call_1",
        arguments={"expression": "6*7"},
        status="completed",
        result={"value": 42},
    )
    m3 = add_message(a, "42", role="tool", tool_call=call)
    m4 = add_message(a, "It is 42.", role="assistant")
    with tenant_context(a.org):
        attachments_add(m1, [SimpleUploadedFile("q.txt", b"six times seven\n", content_type="text/plain")])
    return {"m1": m1, "m2": m2, "m3": m3, "m4": m4, "call": call}


def test_checkpoint_captures_messages_config_and_tags_at_the_current_seq(world, history):
    s = world.a.session
    with tenant_context(world.a.org):
        cp = checkpoint_create(s, name="before more", created_by=world.a.member)
        s.refresh_from_db()
    assert (cp.seq, cp.message_seq, cp.reason, cp.name) == (s.last_event_seq, 4, "manual", "before more")
    assert cp.created_by == world.a.member and cp.organization_id == world.a.org.pk
    with tenant_context(world.a.org):
        state = checkpoint_state(cp)
    assert state["config"] == {"temperature": 0.5} and state["tags"] == ["research"]
    assert [(m["seq"], m["role"], m["content"], m["status"]) for m in state["messages"]] == [
        (1, "user", "What is 6 times 7?", "complete"),
        (2, "assistant", "Let me calculate.", "complete"),
        (3, "tool", "42", "complete"),
        (4, "assistant", "It is 42.", "complete"),
    ]
    (call,) = state["tool_calls"]
    assert call["message_seq"] == 2 and call["tool_name"] == "calculator" and call["result"] == {"value": 42}
    assert state["messages"][2]["tool_call"] == call["ref"]
    assert state["messages"][0]["attachments"][0]["filename"] == "q.txt"


def test_a_settled_history_is_kept_by_reference_and_reads_back_as_it_was(world, history):
    """Nothing streams and no call is undecided: the checkpoint stores config, tags and the message seq it
    reaches, not a copy of the history; what comes later does not leak into it."""
    s = world.a.session
    with tenant_context(world.a.org):
        cp = checkpoint_create(s, reason="auto")
        before = checkpoint_state(cp)
    assert cp.state == {
        "version": 1,
        "config": {"temperature": 0.5},
        "tags": ["research"],
        "by_reference": True,
    }
    assert cp.message_seq == 4
    add_message(world.a, "A later question")
    add_message(world.a, "A later answer", role="assistant", status="streaming")
    with tenant_context(world.a.org):
        Tag.objects.create(organization=world.a.org, name="later")
        session_update(s, config={"temperature": 0.9}, tags=list(Tag.objects.all()))
        cp.refresh_from_db()
        after = checkpoint_state(cp)
    assert after == before
    assert [m["seq"] for m in after["messages"]] == [1, 2, 3, 4]
    assert after["config"] == {"temperature": 0.5} and after["tags"] == ["research"]


@pytest.mark.parametrize("unsettled", ["streaming message", "undecided call"])
def test_a_history_that_may_still_change_is_copied(world, history, unsettled):
    """A message still streaming or a tool call still undecided can change after the checkpoint: the
    checkpoint keeps them as they were."""
    if unsettled == "streaming message":
        open_message = add_message(world.a, "Partial", role="assistant", status="streaming")
    else:
        open_message = add_message(world.a, "Let me check.", role="assistant")
        call = add_tool_call(world.a, message=open_message, status="pending", requires_approval=True)
    with tenant_context(world.a.org):
        cp = checkpoint_create(world.a.session)
        Message.objects.filter(pk=open_message.pk).update(content="Finished", status="complete")
        if unsettled == "undecided call":
            ToolCall.objects.filter(pk=call.pk).update(status="completed")
        state = checkpoint_state(cp)
    assert "by_reference" not in cp.state and state is cp.state
    assert (cp.message_seq, state["messages"][-1]["seq"]) == (5, 5)
    assert state["messages"][-1]["content"] == (
        "Partial" if unsettled == "streaming message" else "Let me check."
    )
    if unsettled == "undecided call":
        assert [c["status"] for c in state["tool_calls"]] == ["completed", "pending"]


def test_auto_checkpoints_and_bad_reasons(world, history):
    with tenant_context(world.a.org):
        assert checkpoint_create(world.a.session, reason="auto").reason == "auto"
        with pytest.raises(SwitchboardError):
            checkpoint_create(world.a.session, reason="whenever")


def test_checkpoints_api(world, client_for, history):
    c = client_for(world.a.member)
    base = world.a.url(f"sessions/{world.a.session.pk}/checkpoints/")
    created = c.post(base, {"name": "v1"}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["name"] == "v1" and body["reason"] == "manual" and body["message_count"] == 4
    assert body["created_by"] == "acme-member"
    listed = c.get(base).json()["results"]
    assert [cp["id"] for cp in listed] == [body["id"]]
    detail = c.get(f"{base}{body['id']}/").json()
    assert [m["content"] for m in detail["state"]["messages"]] == [
        "What is 6 times 7?",
        "Let me calculate.",
        "42",
        "It is 42.",
    ]
    assert detail["state"]["config"] == {"temperature": 0.5} and detail["state"]["tool_calls"][0]["ref"]
    assert_error(client_for(world.a.viewer).post(base, {}, format="json"), 403, "PERMISSION_DENIED")


def test_fork_from_a_checkpoint(world, client_for, history):
    s = world.a.session
    with tenant_context(world.a.org):
        cp = checkpoint_create(s)
    add_message(world.a, "A later question", session=s)  # after the checkpoint: not in the fork
    before = list(Message.all_tenants_unsafe.filter(session=s).values_list("pk", "content", "seq"))
    r = client_for(world.a.admin).post(
        world.a.url(f"sessions/{s.pk}/fork/"), {"checkpoint": str(cp.pk), "name": "Branch"}, format="json"
    )
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["name"] == "Branch" and body["status"] == "active" and body["owner"] == "acme-admin"
    assert body["parent"] == str(s.pk) and body["forked_at_seq"] == cp.seq
    assert body["config"] == {"temperature": 0.5} and [t["name"] for t in body["tags"]] == ["research"]
    fork = Session.all_tenants_unsafe.get(pk=body["id"])
    copies = list(Message.all_tenants_unsafe.filter(session=fork).order_by("seq"))
    assert [(m.seq, m.role, m.content) for m in copies] == [
        (1, "user", "What is 6 times 7?"),
        (2, "assistant", "Let me calculate."),
        (3, "tool", "42"),
        (4, "assistant", "It is 42."),
    ]
    assert fork.last_message_seq == 4 and all(m.pk not in {p for p, _, _ in before} for m in copies)
    (call,) = ToolCall.all_tenants_unsafe.filter(session=fork)
    assert call.message == copies[1] and copies[2].tool_call == call and call.pk != history["call"].pk
    assert Attachment.all_tenants_unsafe.get(message=copies[0]).filename == "q.txt"
    events = list(SessionEvent.all_tenants_unsafe.filter(session=fork).values_list("type", "data"))
    assert [t for t, _ in events] == ["session.created"]
    assert events[0][1]["parent"] == str(s.pk)
    assert events[0][1]["forked_from"] == {
        "session": str(s.pk),
        "checkpoint": str(cp.pk),
        "message": None,
        "seq": cp.seq,
    }
    # The original is untouched.
    assert list(Message.all_tenants_unsafe.filter(session=s).values_list("pk", "content", "seq")) == before


def test_fork_from_a_message_includes_it_and_nothing_after(world, client_for, history):
    s = world.a.session
    r = client_for(world.a.member).post(
        world.a.url(f"sessions/{s.pk}/fork/"), {"message": str(history["m2"].pk)}, format="json"
    )
    assert r.status_code == 201, r.content
    fork = Session.all_tenants_unsafe.get(pk=r.json()["id"])
    assert fork.name == "acme session (fork)" and fork.owner == world.a.member
    assert list(Message.all_tenants_unsafe.filter(session=fork).values_list("seq", "content")) == [
        (1, "What is 6 times 7?"),
        (2, "Let me calculate."),
    ]
    created = SessionEvent.all_tenants_unsafe.get(
        session=s, type="message.created", data__id=str(history["m2"].pk)
    )
    assert fork.forked_at_seq == created.seq
    assert ToolCall.all_tenants_unsafe.get(session=fork).status == "completed"
    # The fork continues on its own: its next message is seq 3, the original keeps its 4 (+0).
    add_message(world.a, "and then?", session=fork)
    assert Message.all_tenants_unsafe.filter(session=fork).count() == 3
    assert Message.all_tenants_unsafe.filter(session=s).count() == 4


def test_undecided_tool_calls_are_not_left_pending_in_a_fork(world, history):
    m = add_message(world.a, "Checking", role="assistant")
    add_tool_call(world.a, message=m, status="pending", requires_approval=True)
    with tenant_context(world.a.org):
        fork = session_fork(world.a.session, message=m)
        statuses = sorted(ToolCall.objects.filter(session=fork).values_list("status", flat=True))
    assert statuses == ["completed", "rejected"]


def test_fork_needs_exactly_one_point(world, client_for, history):
    c = client_for(world.a.member)
    url = world.a.url(f"sessions/{world.a.session.pk}/fork/")
    assert_error(c.post(url, {}, format="json"), 400, "VALIDATION_ERROR")
    with tenant_context(world.a.org):
        cp = checkpoint_create(world.a.session)
    both = {"checkpoint": str(cp.pk), "message": str(history["m1"].pk)}
    assert_error(c.post(url, both, format="json"), 400, "VALIDATION_ERROR")


def test_points_of_another_session_or_organization_are_not_found(world, client_for, history):
    other = new_session(world.a, "other")
    other_message = add_message(world.a, "elsewhere", session=other)
    with tenant_context(world.a.org):
        other_cp = checkpoint_create(other)
    c = client_for(world.a.member)
    url = world.a.url(f"sessions/{world.a.session.pk}/fork/")
    assert_error(c.post(url, {"checkpoint": str(other_cp.pk)}, format="json"), 404, "NOT_FOUND")
    assert_error(c.post(url, {"message": str(other_message.pk)}, format="json"), 404, "MESSAGE_NOT_FOUND")
    # world.b, with world.a's ids.
    with tenant_context(world.a.org):
        cp = checkpoint_create(world.a.session)
    b = client_for(world.b.owner)
    b_url = world.b.url(f"sessions/{world.b.session.pk}/fork/")
    body = b.post(b_url, {"checkpoint": str(cp.pk)}, format="json")
    assert_error(body, 400, "VALIDATION_ERROR")
    assert body.json()["error"]["details"] == {"checkpoint": ["Checkpoint not found."]}
    assert_error(
        b.post(world.b.url(f"sessions/{world.a.session.pk}/fork/"), {}, format="json"),
        404,
        "SESSION_NOT_FOUND",
    )
    assert_error(b.get(world.b.url(f"sessions/{world.b.session.pk}/checkpoints/{cp.pk}/")), 404, "NOT_FOUND")
    assert_error(b.get(world.b.url(f"sessions/{world.a.session.pk}/checkpoints/")), 404, "SESSION_NOT_FOUND")
    assert Session.all_tenants_unsafe.filter(organization=world.b.org).count() == 1
    assert Checkpoint.all_tenants_unsafe.filter(organization=world.b.org).count() == 0


def test_a_streaming_message_cannot_be_forked_from(world, history):
    m = add_message(world.a, "partial", role="assistant", status="streaming")
    with tenant_context(world.a.org), pytest.raises(SwitchboardError) as caught:
        session_fork(world.a.session, message=m)
    assert caught.value.code == "INVALID_STATE"


def test_a_fork_takes_authors_and_files_only_from_its_own_organization(world, history):
    """A checkpoint's state can come from an imported file: an author who is not a member and a file that
    is not one of the organization's attachments (here world.a's) are not restored into the fork."""
    with tenant_context(world.a.org):
        foreign = Attachment.objects.get(message=history["m1"])
    attachment = {
        "filename": "q.txt",
        "content_type": "text/plain",
        "size": foreign.size,
        "sha256": foreign.sha256,
        "file": foreign.file.name,
        "analysis": {},
    }
    message = {"role": "user", "status": "complete", "attachments": [attachment]}
    state = {
        "version": 1,
        "config": {},
        "tags": [],
        "tool_calls": [],
        "messages": [
            {**message, "seq": 1, "content": "from outside", "author": world.a.member.pk},
            {**message, "seq": 2, "content": "from inside", "author": world.b.member.pk},
        ],
    }
    b = world.b
    with tenant_context(b.org):
        cp = Checkpoint.objects.create(
            organization=b.org, session=b.session, seq=0, message_seq=2, state=state
        )
        fork = session_fork(b.session, checkpoint=cp)
        restored = list(Message.objects.filter(session=fork).order_by("seq"))
        assert Attachment.objects.filter(message__session=fork).count() == 0
    assert [(m.content, m.author_id) for m in restored] == [
        ("from outside", None),
        ("from inside", world.b.member.pk),
    ]


def _tool_turns_are_whole(context: list[dict]) -> bool:
    """Each call an assistant turn makes is answered right after it, and each result answers a call."""
    open_calls: set[str] = set()
    for item in context:
        if item["role"] == "tool":
            if item["tool_call_id"] not in open_calls:
                return False
            open_calls.discard(item["tool_call_id"])
        elif open_calls:
            return False
        if item["role"] == "assistant":
            open_calls = {call["id"] for call in item.get("tool_calls", [])}
    return not open_calls


@pytest.mark.parametrize("point", ["m2", "m3", "m4"])
def test_a_fork_continues_with_a_context_the_model_accepts(world, history, point):
    """The model's tool calls stay the model's in a fork (not a person's), and a fork made between a
    call and its result leaves the call out of the context rather than unanswered."""
    from sessions_app.runtime.context import build_context

    asked_for = [{"id": "call_1", "name": "calculator", "arguments": '{"expression": "6*7"}'}]
    with tenant_context(world.a.org):  # m2 is the model's reply that asked for the call
        Message.objects.filter(pk=history["m2"].pk).update(metadata={"tool_calls": asked_for})
        fork = session_fork(world.a.session, message=history[point])
        context = build_context(fork, world.a.agent)
    assert _tool_turns_are_whole(context), context
    assert not any("ran the" in str(item.get("content")) for item in context)
    asked = [item for item in context if item.get("tool_calls")]
    if point == "m2":  # the call's result is not in the fork: the assistant's words stay, the call goes
        assert not asked and context[-1] == {"role": "assistant", "content": "Let me calculate."}
    else:
        assert [call["id"] for call in asked[0]["tool_calls"]] == ["call_1"]
        assert {"role": "tool", "tool_call_id": "call_1", "content": "42"} in context
