"""OpenAPI schema generation: the API key security scheme, and a generator that may look at models.

Generating the schema builds filter sets from model metadata through default managers, which fail
closed without a tenant. The generator reads no rows, so it runs with unscoped access.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.generators import SchemaGenerator

from core.tenancy import unscoped_tenant_access


class SwitchboardSchemaGenerator(SchemaGenerator):
    def get_schema(self, request=None, public=False):
        with unscoped_tenant_access():
            return super().get_schema(request=request, public=public)


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "core.authentication.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "sb_<prefix>_<secret>",
            "description": "An organization's API key: `Authorization: Bearer sb_...`.",
        }
