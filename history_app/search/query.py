"""The search syntax: words (all must match), "quoted phrases" and ``-excluded`` words or phrases.

The query is parsed here into a small AST and rendered by each backend into its own syntax, so nothing a
user types reaches PostgreSQL's ``to_tsquery`` or SQLite's FTS5 ``MATCH`` unescaped. A query this parser
does not accept is a ``VALIDATION_ERROR`` that says what is wrong with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import ErrorCode, SwitchboardError

MAX_QUERY_CHARS = 500
MAX_TERMS = 16
MAX_WORD_CHARS = 100

# Operators of other search syntaxes (FTS5, tsquery, Lucene). Treating them as separators would silently
# change what the user asked for, so they are refused with a clear message instead.
OPERATOR_CHARACTERS = frozenset("*^():{}[]|&!<>~+\\")

# What both backends' tokenizers call a word: letters and digits; everything else separates words.
WORD_RE = re.compile(r"[^\W_]+")


@dataclass(frozen=True)
class Term:
    """One word, or a phrase of several words in this order; excluded terms must not match."""

    words: tuple[str, ...]
    excluded: bool = False

    @property
    def is_phrase(self) -> bool:
        return len(self.words) > 1


@dataclass(frozen=True)
class SearchQuery:
    terms: tuple[Term, ...]
    raw: str = ""

    @property
    def included(self) -> tuple[Term, ...]:
        return tuple(t for t in self.terms if not t.excluded)

    @property
    def excluded(self) -> tuple[Term, ...]:
        return tuple(t for t in self.terms if t.excluded)


def _invalid(message: str, **details) -> SwitchboardError:
    return SwitchboardError(ErrorCode.VALIDATION_ERROR, message, {"q": [message], **details})


def _words(text: str) -> tuple[str, ...]:
    words = tuple(w.lower() for w in WORD_RE.findall(text))
    for word in words:
        if len(word) > MAX_WORD_CHARS:
            raise _invalid(f"Words are limited to {MAX_WORD_CHARS} characters.")
    return words


def parse_query(raw: object) -> SearchQuery:
    """Parse ``raw`` into a :class:`SearchQuery` or raise ``VALIDATION_ERROR``."""
    if not isinstance(raw, str) or not raw.strip():
        raise _invalid("Enter something to search for.")
    if len(raw) > MAX_QUERY_CHARS:
        raise _invalid(f"Search queries are limited to {MAX_QUERY_CHARS} characters.", length=len(raw))
    terms: list[Term] = []
    i, n = 0, len(raw)
    while i < n:
        char = raw[i]
        if char.isspace():
            i += 1
            continue
        excluded = False
        if char == "-":
            excluded = True
            i += 1
            if i >= n or raw[i].isspace():
                raise _invalid("A '-' must be followed by the word or phrase to exclude.")
        if raw[i] == '"':
            end = raw.find('"', i + 1)
            if end < 0:
                raise _invalid("A quoted phrase is not closed: the query has an odd number of quotes.")
            text, i = raw[i + 1 : end], end + 1
            words = _words(text)
            if not words:
                raise _invalid("A quoted phrase has no words in it.")
        else:
            start = i
            while i < n and not raw[i].isspace() and raw[i] != '"':
                i += 1
            text = raw[start:i]
            bad = sorted({c for c in text if c in OPERATOR_CHARACTERS})
            if bad:
                raise _invalid(
                    f"The character {bad[0]!r} is not part of the search syntax: use words, "
                    '"quoted phrases" and -excluded words.',
                    characters=bad,
                )
            words = _words(text)
            if not words:  # punctuation on its own ("?", "...") searches for nothing
                if excluded:
                    raise _invalid("A '-' must be followed by the word or phrase to exclude.")
                continue
        terms.append(Term(words=words, excluded=excluded))
        if len(terms) > MAX_TERMS:
            raise _invalid(f"A search is limited to {MAX_TERMS} words and phrases.")
    if not terms:
        raise _invalid("The query has no words to search for.")
    if all(t.excluded for t in terms):
        raise _invalid("A search needs at least one word or phrase that is not excluded.")
    return SearchQuery(terms=tuple(dict.fromkeys(terms)), raw=raw)


# --- rendering ----------------------------------------------------------------------------------------


def _tsquery_lexeme(word: str) -> str:
    # tsquery quoting: single quotes around, quotes doubled and backslashes escaped inside.
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def _tsquery_term(term: Term) -> str:
    if term.is_phrase:
        return "(" + " <-> ".join(_tsquery_lexeme(w) for w in term.words) + ")"
    return _tsquery_lexeme(term.words[0])


def render_tsquery(query: SearchQuery) -> str:
    """The ``to_tsquery`` text: ``'a' & ('b' <-> 'c') & !'d'``; normalized (stemmed) by PostgreSQL."""
    parts = [_tsquery_term(t) for t in query.included]
    parts += ["!" + _tsquery_term(t) for t in query.excluded]
    return " & ".join(parts)


def _fts5_string(term: Term) -> str:
    # An FTS5 string: every character literal; a phrase when it holds several tokens.
    return '"' + " ".join(term.words).replace('"', '""') + '"'


def render_fts5(query: SearchQuery) -> str:
    """The FTS5 ``MATCH`` text: ``("a" AND "b c") NOT "d" NOT "e"``."""
    text = "(" + " AND ".join(_fts5_string(t) for t in query.included) + ")"
    for term in query.excluded:
        text = f"({text} NOT {_fts5_string(term)})"
    return text
