"""Queue tasks of the core app."""

from __future__ import annotations


def idempotency_cleanup() -> int:
    from core.api.idempotency import idempotency_cleanup as cleanup

    return cleanup()
