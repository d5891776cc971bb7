"""Full-text search over message content: the query syntax, the index and the search itself."""

from history_app.search.backends import SearchHit, SearchPage, search_messages
from history_app.search.query import SearchQuery, Term, parse_query

__all__ = ["SearchHit", "SearchPage", "SearchQuery", "Term", "parse_query", "search_messages"]
