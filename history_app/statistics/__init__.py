"""Statistics of a session and of an organization over a date range, computed lazily and cached.

Invalidation: a session's figures are cached under a key that includes its ``last_event_seq``. Every
observable change of a session is an event that advances that counter, and the counter is on the
session row we read anyway, so a new event makes the next read miss the cache without any write on
the event path (a version counter would need a cache write in ``event_publish`` for every streamed
chunk) and without ever serving figures older than the last event; stale keys simply expire. The
organization's figures use the same idea with the sum of its sessions' ``last_event_seq`` and their count.
"""

from history_app.statistics.organization import StatisticsRange, organization_statistics, parse_range
from history_app.statistics.session import session_statistics

__all__ = ["StatisticsRange", "organization_statistics", "parse_range", "session_statistics"]
