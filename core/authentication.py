"""DRF authentication by API key: ``Authorization: Bearer sb_...``."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from rest_framework import authentication, exceptions

from core.api_keys import KEY_PREFIX, api_key_verify


class ApiKeyUser(AnonymousUser):
    """The principal of a key whose creator is gone: authenticated, but nobody's user account."""

    @property
    def is_anonymous(self) -> bool:
        return False

    @property
    def is_authenticated(self) -> bool:
        return True


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        parts = header.split()
        if len(parts) != 2 or parts[0].lower() != self.keyword.lower():
            return None
        if not parts[1].startswith(KEY_PREFIX):
            raise exceptions.AuthenticationFailed("Malformed API key.")
        key = api_key_verify(parts[1])
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked API key.")
        return (key.created_by or ApiKeyUser(), key)

    def authenticate_header(self, request) -> str:
        return self.keyword
