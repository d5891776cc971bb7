"""Enqueueing tasks on the django-q2 cluster.

``async_task`` makes a new broker per call when none is given, and the Redis broker a new connection
pool with it: every enqueue paid for a TCP connection to Redis. :func:`enqueue` keeps one broker per
process (a forked child makes its own).
"""

from __future__ import annotations

import os
import threading
from typing import Any

_lock = threading.Lock()
_broker: tuple[int, Any] | None = None


def broker():
    global _broker
    with _lock:
        if _broker is None or _broker[0] != os.getpid():
            from django_q.brokers import get_broker

            _broker = (os.getpid(), get_broker())
        return _broker[1]


def enqueue(func: str, *args: Any, **kwargs: Any) -> str:
    """``django_q.tasks.async_task`` on this process's broker; returns the task id."""
    from django_q.tasks import async_task

    return async_task(func, *args, broker=broker(), **kwargs)
