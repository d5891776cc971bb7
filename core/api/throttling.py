"""The API's rate limit per caller: ``API_RATE_LIMIT`` requests per window.

DRF's ``UserRateThrottle`` keeps every request's time of the window in one cache entry, read and written
whole by each request: up to ``API_RATE_LIMIT`` timestamps unpickled and pickled again per request, and
two concurrent requests can each overwrite the other's entry. This one counts each window in a cache
entry of its own with an atomic increment (Redis ``INCR``). A fixed window lets a caller send up to
twice the rate around a window's edge, the usual price of a constant-cost counter.
"""

from __future__ import annotations

import math

from rest_framework.throttling import UserRateThrottle

from core.models import ApiKey


class ApiRateThrottle(UserRateThrottle):
    """Same scope and ``429 RATE_LIMITED`` with ``Retry-After`` as DRF's, at one increment per request.
    An API key has a count of its own (``key:<pk>``): keys whose creator is gone have no user to count
    by, and must not share one count across every organization."""

    def get_cache_key(self, request, view) -> str | None:
        if isinstance(request.auth, ApiKey):
            return self.cache_format % {"scope": self.scope, "ident": f"key:{request.auth.pk}"}
        return super().get_cache_key(request, view)

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        self.now = self.timer()
        window = int(self.now // self.duration)
        self.window_ends = (window + 1) * self.duration
        key = f"{key}_{window}"
        try:
            count = self.cache.incr(key)
        except ValueError:  # the window's first request (or its entry just expired)
            count = 1 if self.cache.add(key, 1, self.duration + 1) else self.cache.incr(key)
        return count <= self.num_requests

    def wait(self) -> float:
        return max(0.0, math.ceil((self.window_ends - self.now) * 1000) / 1000)
