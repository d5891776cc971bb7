"""The search syntax: parsed into a small AST, rendered safely for PostgreSQL and FTS5 (no database)."""

from __future__ import annotations

import pytest

from core.errors import SwitchboardError
from history_app.search.query import (
    MAX_QUERY_CHARS,
    MAX_TERMS,
    Term,
    parse_query,
    render_fts5,
    render_tsquery,
)


def test_words_phrases_and_exclusions():
    query = parse_query('Quick "brown fox" -lazy -"big dog"')
    assert query.terms == (
        Term(("quick",)),
        Term(("brown", "fox")),
        Term(("lazy",), excluded=True),
        Term(("big", "dog"), excluded=True),
    )
    assert [t.words for t in query.included] == [("quick",), ("brown", "fox")]
    assert [t.words for t in query.excluded] == [("lazy",), ("big", "dog")]


def test_punctuation_separates_words_like_the_tokenizers_do():
    assert parse_query("e-mail").terms == (Term(("e", "mail")),)
    assert parse_query("don't stop_now").terms == (Term(("don", "t")), Term(("stop", "now")))
    assert parse_query("what? ...").terms == (Term(("what",)),)
    assert parse_query("café ÜBER").terms == (Term(("café",)), Term(("über",)))


def test_repeated_terms_collapse():
    assert parse_query("fox fox FOX").terms == (Term(("fox",)),)


def test_rendering_for_postgresql():
    query = parse_query('quick "brown fox" -lazy -"big dog"')
    assert render_tsquery(query) == "'quick' & ('brown' <-> 'fox') & !'lazy' & !('big' <-> 'dog')"


def test_rendering_for_fts5():
    query = parse_query('quick "brown fox" -lazy -"big dog"')
    assert render_fts5(query) == '((("quick" AND "brown fox") NOT "lazy") NOT "big dog")'


def test_fts5_keywords_are_quoted_as_plain_words():
    assert render_fts5(parse_query("NEAR AND OR NOT")) == '("near" AND "and" AND "or" AND "not")'


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("", "Enter something"),
        ("  \t ", "Enter something"),
        ('"open phrase', "not closed"),
        ('a "b" "c', "not closed"),
        ('""', "no words"),
        ('" ... "', "no words"),
        ("-a -b", "not excluded"),
        ('-"a b"', "not excluded"),
        ("-", "must be followed"),
        ("a - b", "must be followed"),
        ("-...", "must be followed"),
        ("...", "no words"),
        ("col:value", "':'"),
        ("prefix*", "'*'"),
        ("(a OR b)", "'('"),
        ("^first", "'^'"),
        ("a+b", "'+'"),
        ("a|b", "'|'"),
        ("!a", "'!'"),
        ("x" * (MAX_QUERY_CHARS + 1), "limited to"),
        (" ".join(f"w{i}" for i in range(MAX_TERMS + 1)), "limited to"),
        ("y" * 101, "limited to 100"),
    ],
)
def test_malformed_queries(raw, fragment):
    with pytest.raises(SwitchboardError) as caught:
        parse_query(raw)
    assert caught.value.code == "VALIDATION_ERROR"
    assert fragment in caught.value.message
    assert caught.value.details["q"] == [caught.value.message]


def test_not_a_string():
    with pytest.raises(SwitchboardError):
        parse_query(None)
