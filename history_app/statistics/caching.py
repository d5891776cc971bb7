"""The statistics cache: Django's cache (per deployment); a cache outage only costs a recomputation."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

KEY_VERSION = 1


def cached(key: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    key = f"history:stats:v{KEY_VERSION}:{key}"
    try:
        value = cache.get(key)
    except Exception:  # statistics are worth serving without the cache
        logger.warning("statistics cache read failed", exc_info=True)
        return compute()
    if value is not None:
        return value
    value = compute()
    try:
        cache.set(key, value, settings.STATISTICS_CACHE_SECONDS)
    except Exception:
        logger.warning("statistics cache write failed", exc_info=True)
    return value


def median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[middle])
    return (ordered[middle - 1] + ordered[middle]) / 2


def percentile(values: list[float], percent: int) -> float | None:
    """Nearest-rank percentile: the smallest value with at least ``percent`` % of the values at or below."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-percent * len(ordered) // 100))  # ceil(percent * n / 100) in integers
    return float(ordered[rank - 1])


def summary(values: list[float]) -> dict[str, Any]:
    return {"count": len(values), "median": median(values), "p95": percentile(values, 95)}


def iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
