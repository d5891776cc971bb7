"""Database helpers: :func:`unique_or_none`, and connections across ``fork``.

The queue cluster forks its worker processes. A connection pool (``DATABASES[...]["OPTIONS"]["pool"]``)
inherited from the forking process holds sockets that belong to that process: the child must neither
use nor close them (closing would end the parent's sessions on the server). After a fork the child
forgets the inherited pools, keeping the objects referenced so that they are never finalized, and opens
pools of its own on first use.
"""

from __future__ import annotations

import os

_inherited: list = []


def _forget_inherited_pools() -> None:
    try:
        from django.db.backends.postgresql.base import DatabaseWrapper
    except ImportError:  # psycopg is not installed: nothing was pooled
        return
    pools = DatabaseWrapper._connection_pools
    if pools:
        _inherited.extend(pools.values())
        pools.clear()


os.register_at_fork(after_in_child=_forget_inherited_pools)


def unique_or_none(queryset):
    """The row of ``queryset`` (filtered on a unique key), or None.

    ``.first()`` orders the query (by the model's ordering, else by ``pk``), which a lookup of one row does
    not need and which costs a fraction of a millisecond to compile on every call. On the paths that run
    per message or per streamed chunk (an API key's check, a run's reads), that adds up."""
    return next(iter(queryset.order_by()[:1]), None)
