from tests.support.assertions import assert_error


def test_session_list_and_cross_tenant(world, client_for):
    c = client_for(world.a.member)
    r = c.get(world.a.url("sessions/"))
    assert r.status_code == 200, r.content
    assert [s["id"] for s in r.json()["results"]] == [str(world.a.session.pk)]
    r = c.get(world.a.url(f"sessions/{world.b.session.pk}/"))
    assert_error(r, 404, "SESSION_NOT_FOUND")
    r = c.get(world.b.url("sessions/"))
    assert_error(r, 404, "ORGANIZATION_NOT_FOUND")
    r = c.post(world.a.url(f"sessions/{world.a.session.pk}/messages/"), {"content": "hello"}, format="json")
    assert r.status_code == 201, r.content
    r = c.get(world.a.url(f"sessions/{world.a.session.pk}/events/"))
    assert [e["type"] for e in r.json()["events"]] == [
        "session.created",
        "session.activated",
        "message.created",
        "run.queued",
    ]
