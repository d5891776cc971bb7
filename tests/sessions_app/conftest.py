"""Fixtures for runtime tests: a real OpenAI-compatible server, and organizations pointed at it."""

from __future__ import annotations

import pytest

from core.tenancy import tenant_context
from sessions_app.services.catalog import provider_credential_save
from tests.support.llm_server import LLMServer


@pytest.fixture
def llm():
    with LLMServer() as server:
        yield server


@pytest.fixture
def use_llm(llm):
    """Point a tenant's default provider at the test server: ``use_llm(world.a, max_retries=0)``."""

    def configure(tenant, **overrides):
        fields = {
            "name": "test server",
            "kind": "compatible",
            "base_url": llm.base_url,
            "api_key": "sk-test",
            "is_default": True,
            "max_retries": 0,
            "timeout_seconds": 5.0,
            **overrides,
        }
        with tenant_context(tenant.org):
            return provider_credential_save(None, organization=tenant.org, **fields)

    return configure
