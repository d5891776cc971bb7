"""Session lifecycle services: every transition from every status, events, expiry (DESIGN.md, principle 5)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.errors import ErrorCode, SwitchboardError
from core.tenancy import tenant_context
from sessions_app.models import EndedReason, Session, SessionEvent, SessionStatus
from sessions_app.services import lifecycle
from sessions_app.services.messages import message_post_user

CREATED, ACTIVE, SUSPENDED, ENDED = (
    SessionStatus.CREATED,
    SessionStatus.ACTIVE,
    SessionStatus.SUSPENDED,
    SessionStatus.ENDED,
)

ACTIONS = {
    "activate": lifecycle.session_activate,
    "suspend": lifecycle.session_suspend,
    "resume": lifecycle.session_resume,
    "end": lifecycle.session_end,
}

# How to reach each status from a new session, through the services.
PATH_TO = {
    CREATED: [],
    ACTIVE: ["activate"],
    SUSPENDED: ["activate", "suspend"],
    ENDED: ["end"],
}

# (from, action) -> the status afterwards and the event written; None: INVALID_STATE; "noop": nothing.
TABLE = {
    (CREATED, "activate"): (ACTIVE, "session.activated"),
    (CREATED, "suspend"): None,
    (CREATED, "resume"): None,
    (CREATED, "end"): (ENDED, "session.ended"),
    (ACTIVE, "activate"): "noop",
    (ACTIVE, "suspend"): (SUSPENDED, "session.suspended"),
    (ACTIVE, "resume"): "noop",
    (ACTIVE, "end"): (ENDED, "session.ended"),
    (SUSPENDED, "activate"): None,
    (SUSPENDED, "suspend"): "noop",
    (SUSPENDED, "resume"): (ACTIVE, "session.activated"),
    (SUSPENDED, "end"): (ENDED, "session.ended"),
    (ENDED, "activate"): None,
    (ENDED, "suspend"): None,
    (ENDED, "resume"): None,
    (ENDED, "end"): "noop",
}


def session_in(tenant, status: str) -> Session:
    session = tenant.session
    for action in PATH_TO[status]:
        session = ACTIONS[action](session)
    assert Session.objects.get(pk=session.pk).status == status
    return session


def event_types(session: Session) -> list[str]:
    return list(SessionEvent.objects.filter(session=session).order_by("seq").values_list("type", flat=True))


def assert_gap_free(session: Session) -> None:
    seqs = list(SessionEvent.objects.filter(session=session).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    assert Session.objects.get(pk=session.pk).last_event_seq == len(seqs)


def test_the_table_covers_every_status_and_action():
    assert set(TABLE) == {(s, a) for s in SessionStatus.values for a in ACTIONS}


@pytest.mark.parametrize(("start", "action"), sorted(TABLE))
def test_transition(world, start, action):
    expected = TABLE[(start, action)]
    with tenant_context(world.a.org):
        session = session_in(world.a, start)
        before = event_types(session)

        if expected is None:
            with pytest.raises(SwitchboardError) as caught:
                ACTIONS[action](session)
            error = caught.value
            assert error.code == ErrorCode.INVALID_STATE
            assert error.status == 400
            assert start in error.message
            assert error.details["status"] == start
            assert Session.objects.get(pk=session.pk).status == start
            assert event_types(session) == before
        elif expected == "noop":
            result = ACTIONS[action](session)
            assert result.status == start
            assert Session.objects.get(pk=session.pk).status == start
            assert event_types(session) == before
        else:
            target, event_type = expected
            result = ACTIONS[action](session)
            assert result.status == target
            assert Session.objects.get(pk=session.pk).status == target
            assert event_types(session) == [*before, event_type]
            last = SessionEvent.objects.filter(session=session).order_by("-seq").first()
            assert last.data["status"] == target
            assert last.data["previous_status"] == start
        assert_gap_free(session)


def test_repeating_a_transition_is_harmless(world):
    with tenant_context(world.a.org):
        session = world.a.session
        for action in ["activate", "activate", "suspend", "suspend", "resume", "resume", "end", "end"]:
            session = ACTIONS[action](session)
        assert event_types(session) == [
            "session.created",
            "session.activated",
            "session.suspended",
            "session.activated",
            "session.ended",
        ]
        assert_gap_free(session)


def test_end_records_reason_and_time_and_stays_ended(world):
    with tenant_context(world.a.org):
        session = lifecycle.session_end(world.a.session, EndedReason.ADMIN)
        assert session.ended_reason == EndedReason.ADMIN
        assert session.ended_at is not None
        ended_at = session.ended_at
        # Ending again changes nothing: not the reason, not the time.
        again = lifecycle.session_end(session, EndedReason.USER)
        assert again.ended_reason == EndedReason.ADMIN
        assert again.ended_at == ended_at
        for action in ("activate", "suspend", "resume"):
            with pytest.raises(SwitchboardError):
                ACTIONS[action](session)
        assert Session.objects.get(pk=session.pk).status == ENDED


def test_transition_reads_the_current_row_not_a_stale_instance(world):
    with tenant_context(world.a.org):
        stale = Session.objects.get(pk=world.a.session.pk)
        lifecycle.session_end(world.a.session)
        with pytest.raises(SwitchboardError) as caught:
            lifecycle.session_activate(stale)  # the instance still says "created"
        assert caught.value.details["status"] == ENDED


def test_created_session_has_its_event(world):
    with tenant_context(world.a.org):
        assert event_types(world.a.session) == ["session.created"]
        event = SessionEvent.objects.get(session=world.a.session)
        assert event.data["status"] == CREATED
        assert event.data["id"] == str(world.a.session.pk)


def test_usable_session_passes_the_check(world):
    with tenant_context(world.a.org):
        session = lifecycle.session_check_usable(world.a.session)
        assert session.status == CREATED


def test_session_past_expires_at_ends_as_expired(world):
    with tenant_context(world.a.org):
        session = world.a.session
        Session.objects.filter(pk=session.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        session.refresh_from_db()
        with pytest.raises(SwitchboardError) as caught:
            lifecycle.session_check_usable(session)
        assert caught.value.code == ErrorCode.SESSION_EXPIRED
        assert caught.value.status == 410
        stored = Session.objects.get(pk=session.pk)
        assert stored.status == ENDED
        assert stored.ended_reason == EndedReason.EXPIRED
        assert event_types(session)[-1] == "session.ended"
        ended = SessionEvent.objects.filter(session=session, type="session.ended").get()
        assert ended.data["ended_reason"] == EndedReason.EXPIRED
        # Checking again keeps saying expired, and writes no second event.
        with pytest.raises(SwitchboardError) as again:
            lifecycle.session_check_usable(stored)
        assert again.value.code == ErrorCode.SESSION_EXPIRED
        assert event_types(session).count("session.ended") == 1


def test_session_with_future_expiry_is_usable(world):
    with tenant_context(world.a.org):
        session = world.a.session
        Session.objects.filter(pk=session.pk).update(expires_at=timezone.now() + timedelta(hours=1))
        session.refresh_from_db()
        assert lifecycle.session_check_usable(session).status == CREATED


def test_ended_session_is_not_usable(world):
    with tenant_context(world.a.org):
        session = lifecycle.session_end(world.a.session)
        with pytest.raises(SwitchboardError) as caught:
            lifecycle.session_check_usable(session)
        assert caught.value.code == ErrorCode.INVALID_STATE
        assert caught.value.details["status"] == ENDED


@pytest.mark.parametrize("start", [CREATED, SUSPENDED])
def test_posting_a_message_activates_or_resumes(world, start):
    with tenant_context(world.a.org):
        session = session_in(world.a, start)
        message_post_user(session, "hello", author=world.a.member)
        message = session.messages.get()
        assert (message.seq, message.content, message.author) == (1, "hello", world.a.member)
        assert Session.objects.get(pk=session.pk).status == ACTIVE
        new_events = event_types(session)[len(PATH_TO[start]) + 1 :]
        assert new_events[:2] == ["session.activated", "message.created"]
        assert_gap_free(session)


def test_posting_to_an_expired_session_fails_and_ends_it(world):
    with tenant_context(world.a.org):
        session = world.a.session
        Session.objects.filter(pk=session.pk).update(expires_at=timezone.now() - timedelta(minutes=5))
        session.refresh_from_db()
        with pytest.raises(SwitchboardError) as caught:
            message_post_user(session, "hello", author=world.a.member)
        assert caught.value.code == ErrorCode.SESSION_EXPIRED
        stored = Session.objects.get(pk=session.pk)
        assert (stored.status, stored.ended_reason) == (ENDED, EndedReason.EXPIRED)
        assert not stored.messages.exists()


def test_update_changes_fields_and_writes_an_event(world):
    with tenant_context(world.a.org):
        session = lifecycle.session_update(
            world.a.session, name="Renamed", config={"temperature": 0.5}, metadata={"k": "v"}
        )
        stored = Session.objects.get(pk=session.pk)
        assert stored.name == "Renamed"
        assert stored.config["temperature"] == 0.5
        assert stored.metadata == {"k": "v"}
        assert event_types(session)[-1] == "session.updated"
        assert_gap_free(session)


def test_ended_session_cannot_be_updated(world):
    with tenant_context(world.a.org):
        session = lifecycle.session_end(world.a.session)
        with pytest.raises(SwitchboardError) as caught:
            lifecycle.session_update(session, name="late")
        assert caught.value.code == ErrorCode.INVALID_STATE
