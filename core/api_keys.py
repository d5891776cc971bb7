"""API key issuing and verification.

A key reads ``sb_<prefix>_<secret>``. The prefix finds the row; the secret is checked against a slow
(PBKDF2) hash. A successful check is remembered in process for a few minutes, by a fast digest of the
whole key, so a busy program does not pay the slow hash on every request; revocation and expiry are read
from the row on every request and take effect at once.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from threading import Lock

from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.utils import timezone

from core.db import unique_or_none
from core.models import ApiKey, ApiKeyScope, Organization

KEY_PREFIX = "sb_"
_verified: dict[str, tuple[str, float]] = {}
_verified_lock = Lock()


@dataclass
class IssuedKey:
    api_key: ApiKey
    secret: str  # shown once, never stored


def api_key_issue(
    *,
    organization: Organization,
    name: str,
    scopes: list[str] | None = None,
    created_by=None,
    expires_at: datetime | None = None,
) -> IssuedKey:
    """Create an API key; the returned secret is the only copy of the full key."""
    scopes = list(scopes or [ApiKeyScope.READ, ApiKeyScope.WRITE])
    unknown = set(scopes) - set(ApiKeyScope.values)
    if unknown:
        raise ValueError(f"unknown scopes: {sorted(unknown)}")
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    full = f"{KEY_PREFIX}{prefix}_{secret}"
    key = ApiKey.all_tenants_unsafe.create(
        organization=organization,
        name=name,
        prefix=prefix,
        hashed_secret=make_password(full),
        scopes=scopes,
        created_by=created_by,
        expires_at=expires_at,
    )
    return IssuedKey(api_key=key, secret=full)


def api_key_revoke(api_key: ApiKey) -> ApiKey:
    """Revoke a key; idempotent."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    with _verified_lock:
        _verified.pop(api_key.prefix, None)
    return api_key


def _split(raw: str) -> tuple[str, str] | None:
    if not raw.startswith(KEY_PREFIX):
        return None
    parts = raw[len(KEY_PREFIX) :].split("_", 1)
    if len(parts) != 2 or not parts[0] or not parts[1]:
        return None
    return parts[0], raw


def api_key_verify(raw: str) -> ApiKey | None:
    """The active key matching ``raw``, or None. Updates ``last_used_at`` at most once a minute."""
    split = _split(raw.strip())
    if split is None:
        return None
    prefix, full = split
    key = unique_or_none(
        ApiKey.all_tenants_unsafe.select_related("organization", "created_by").filter(prefix=prefix)
    )
    if key is None or not key.is_active:
        return None
    digest = hashlib.sha256(full.encode()).hexdigest()
    now = time.monotonic()
    with _verified_lock:
        cached = _verified.get(prefix)
    if not (cached and secrets.compare_digest(cached[0], digest) and cached[1] > now):
        if not check_password(full, key.hashed_secret):
            return None
        with _verified_lock:
            _verified[prefix] = (digest, now + settings.API_KEY_CACHE_SECONDS)
    if key.last_used_at is None or (timezone.now() - key.last_used_at).total_seconds() > 60:
        key.last_used_at = timezone.now()
        ApiKey.all_tenants_unsafe.filter(pk=key.pk).update(last_used_at=key.last_used_at)
    return key
