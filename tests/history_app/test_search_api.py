"""Full-text search over REST, on whichever database the suite runs on (SQLite FTS5 or PostgreSQL)."""

from __future__ import annotations

import pytest

from core.tenancy import tenant_context
from history_app.models import Bookmark
from sessions_app.models import Message, MessageStatus
from tests.history_app.builders import add_message, new_session
from tests.support.assertions import assert_error


def search(client, tenant, q: str, **params):
    response = client.get(tenant.url("search/"), {"q": q, **params})
    assert response.status_code == 200, response.content
    return response.json()


def contents(body) -> list[str]:
    return [hit["snippet"] for hit in body["results"]]


def message_ids(body) -> list[str]:
    return [hit["message"] for hit in body["results"]]


@pytest.fixture
def corpus(world):
    a = world.a
    messages = {
        "fox": add_message(a, "The quick brown fox jumps over the lazy dog"),
        "fox2": add_message(a, "A brown dog and a quick cat", role="assistant"),
        "email": add_message(a, "Please send the e-mail to the finance team"),
        "walrus": add_message(a, "Walruses are running along the beach"),
    }
    return messages


def test_words_must_all_match(world, client_for, corpus):
    body = search(client_for(world.a.member), world.a, "quick brown")
    assert set(message_ids(body)) == {str(corpus["fox"].pk), str(corpus["fox2"].pk)}
    body = search(client_for(world.a.member), world.a, "quick fox")
    assert message_ids(body) == [str(corpus["fox"].pk)]


def test_a_quoted_phrase_matches_words_in_order(world, client_for, corpus):
    c = client_for(world.a.member)
    assert message_ids(search(c, world.a, '"brown fox"')) == [str(corpus["fox"].pk)]
    assert message_ids(search(c, world.a, '"fox brown"')) == []
    # A hyphenated word is a phrase of its parts, as both tokenizers see it.
    assert message_ids(search(c, world.a, "e-mail")) == [str(corpus["email"].pk)]


def test_excluded_words_and_phrases(world, client_for, corpus):
    c = client_for(world.a.member)
    assert message_ids(search(c, world.a, "brown -fox")) == [str(corpus["fox2"].pk)]
    assert message_ids(search(c, world.a, 'quick -"lazy dog"')) == [str(corpus["fox2"].pk)]


def test_words_are_stemmed_and_case_insensitive(world, client_for, corpus):
    c = client_for(world.a.member)
    assert message_ids(search(c, world.a, "RUNS Beaches")) == [str(corpus["walrus"].pk)]


def test_results_carry_session_snippet_and_rank(world, client_for, corpus):
    body = search(client_for(world.a.member), world.a, "finance")
    (hit,) = body["results"]
    assert hit["session"] == {"id": str(world.a.session.pk), "name": "acme session"}
    assert hit["role"] == "user" and hit["seq"] == corpus["email"].seq
    assert "<mark>finance</mark>" in hit["snippet"]
    assert isinstance(hit["rank"], float) and hit["rank"] > 0
    assert body["next"] is None and body["previous"] is None


def test_snippets_escape_message_markup(world, client_for):
    add_message(world.a, "<script>alert('pwned')</script> <b>bold</b> 1 < 2 kaboom")
    (hit,) = search(client_for(world.a.member), world.a, "kaboom")["results"]
    # PostgreSQL drops tags from headlines, FTS5 keeps the text: either way none survives as markup.
    assert "<script>" not in hit["snippet"] and "<b>" not in hit["snippet"]
    assert "1 &lt; 2" in hit["snippet"] and "<mark>kaboom</mark>" in hit["snippet"]


def test_best_match_first(world, client_for):
    once = add_message(world.a, "zebra one two three four five six seven")
    thrice = add_message(world.a, "zebra zebra zebra four five six seven")
    twice = add_message(world.a, "zebra one zebra three four five six seven")
    body = search(client_for(world.a.member), world.a, "zebra")
    assert message_ids(body) == [str(thrice.pk), str(twice.pk), str(once.pk)]
    ranks = [hit["rank"] for hit in body["results"]]
    assert ranks == sorted(ranks, reverse=True) and ranks[0] > ranks[-1]


def test_pages_by_offset_without_repeats_or_gaps(world, client_for):
    made = [add_message(world.a, "identical quokka text") for _ in range(7)]
    c = client_for(world.a.member)
    seen, url = [], world.a.url("search/") + "?q=quokka&limit=3"
    while url:
        response = c.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        assert len(body["results"]) <= 3
        seen += message_ids(body)
        url = body["next"]
    assert sorted(seen) == sorted(str(m.pk) for m in made) and len(seen) == 7
    # Equal ranks tie-break newest first.
    assert seen == [
        str(m.pk) for m in sorted(made, key=lambda m: (m.created_at, str(m.pk)), reverse=True)
    ] or (len({m.created_at for m in made}) < 7)
    second = c.get(world.a.url("search/"), {"q": "quokka", "limit": 3, "offset": 3}).json()
    assert second["previous"] is not None and message_ids(second) == seen[3:6]


def test_role_filter(world, client_for, corpus):
    c = client_for(world.a.member)
    assert message_ids(search(c, world.a, "quick", role="assistant")) == [str(corpus["fox2"].pk)]
    assert set(message_ids(search(c, world.a, "quick", role=["assistant", "user"]))) == {
        str(corpus["fox"].pk),
        str(corpus["fox2"].pk),
    }
    assert_error(c.get(world.a.url("search/"), {"q": "quick", "role": "robot"}), 400, "VALIDATION_ERROR")


def test_history_filters_apply_to_search(world, client_for):
    tagged = new_session(world.a, "Tagged talk", tags=["finance"])
    other = new_session(world.a, "Other talk", owner=world.a.admin)
    in_tagged = add_message(world.a, "budget meeting notes", session=tagged)
    in_other = add_message(world.a, "budget spreadsheet", session=other)
    c = client_for(world.a.member)
    assert message_ids(search(c, world.a, "budget", tag="finance")) == [str(in_tagged.pk)]
    assert message_ids(search(c, world.a, "budget", name="other")) == [str(in_other.pk)]
    assert message_ids(search(c, world.a, "budget", owner="me")) == [str(in_tagged.pk)]
    with tenant_context(world.a.org):
        Bookmark.objects.create(organization=world.a.org, user=world.a.member, session=other)
    assert message_ids(search(c, world.a, "budget", has_bookmarks="true")) == [str(in_other.pk)]
    assert message_ids(search(c, world.a, "budget", status="ended")) == []
    assert_error(c.get(world.a.url("search/"), {"q": "budget", "status": "bogus"}), 400, "VALIDATION_ERROR")


def test_streaming_messages_are_searchable_once_complete(world, client_for):
    message = add_message(world.a, "partial answ", role="assistant", status=MessageStatus.STREAMING)
    c = client_for(world.a.member)
    assert search(c, world.a, "answ")["results"] == []
    with tenant_context(world.a.org):
        Message.objects.filter(pk=message.pk).update(content="partial answer about narwhals")
        assert search(c, world.a, "narwhals")["results"] == []
        Message.objects.filter(pk=message.pk).update(status=MessageStatus.COMPLETE)
    assert message_ids(search(c, world.a, "narwhals")) == [str(message.pk)]


def test_edits_and_deletes_reach_the_index(world, client_for):
    message = add_message(world.a, "original wording about llamas")
    c = client_for(world.a.member)
    with tenant_context(world.a.org):
        Message.objects.filter(pk=message.pk).update(content="revised wording about alpacas")
    assert search(c, world.a, "llamas")["results"] == []
    assert message_ids(search(c, world.a, "alpacas")) == [str(message.pk)]
    with tenant_context(world.a.org):
        Message.objects.filter(pk=message.pk).delete()
    assert search(c, world.a, "alpacas")["results"] == []


def test_another_organizations_text_never_appears(world, client_for):
    mine = add_message(world.a, "shared secret pineapple")
    add_message(world.b, "shared secret pineapple from globex")
    add_message(world.b, "globex-only mangosteen")
    c = client_for(world.a.member)
    body = search(c, world.a, "pineapple")
    assert message_ids(body) == [str(mine.pk)]
    assert "globex" not in str(body)
    assert search(c, world.a, "mangosteen")["results"] == []
    # Filtering by another organization's session finds nothing of theirs either.
    assert search(c, world.a, "pineapple", name="globex")["results"] == []
    assert_error(c.get(world.b.url("search/"), {"q": "pineapple"}), 404, "ORGANIZATION_NOT_FOUND")


@pytest.mark.parametrize(
    "q",
    [
        "",
        "   ",
        '"unbalanced phrase',
        'two "quotes" and "one',
        "-only -exclusions",
        "-",
        "foo -",
        '""',
        "x" * 501,
        "title:secret",
        "wild*",
        "NEAR(a b)",
        "a OR (b",
        "^start",
        "c++",
        "a & b | !c",
    ],
)
def test_malformed_queries_are_validation_errors(world, client_for, q):
    error = assert_error(
        client_for(world.a.member).get(world.a.url("search/"), {"q": q}), 400, "VALIDATION_ERROR"
    )
    assert error["details"]["q"]


def test_missing_q_and_bad_paging_are_validation_errors(world, client_for):
    c = client_for(world.a.member)
    assert_error(c.get(world.a.url("search/")), 400, "VALIDATION_ERROR")
    assert_error(c.get(world.a.url("search/"), {"q": "x", "limit": 0}), 400, "VALIDATION_ERROR")
    assert_error(c.get(world.a.url("search/"), {"q": "x", "offset": -1}), 400, "VALIDATION_ERROR")


def test_upper_case_operators_are_plain_words(world, client_for):
    message = add_message(world.a, "cats AND dogs NOT birds")
    body = search(client_for(world.a.member), world.a, "cats AND NOT")
    assert message_ids(body) in ([str(message.pk)], [])  # "and"/"not" are stop words on PostgreSQL
    assert message_ids(search(client_for(world.a.member), world.a, "cats NOT")) in ([str(message.pk)], [])


def test_broad_queries_rank_a_bounded_set_and_say_so(world, client_for, settings):
    settings.SEARCH_RANK_CANDIDATES = 3
    for i in range(6):
        add_message(world.a, f"broad term number {i}")
    add_message(world.a, "narrow specific")
    c = client_for(world.a.member)
    broad = search(c, world.a, "broad")
    assert broad["approximate"] is True and 1 <= len(broad["results"]) <= 4
    narrow = search(c, world.a, "narrow")
    assert narrow["approximate"] is False and len(narrow["results"]) == 1
    # Another organization's matches do not use up the candidates.
    for i in range(5):
        add_message(world.b, f"exact term {i}")
    exact = [add_message(world.a, f"exact term a{i}") for i in range(3)]
    body = search(c, world.a, "exact")
    assert body["approximate"] is False and set(message_ids(body)) == {str(m.pk) for m in exact}
