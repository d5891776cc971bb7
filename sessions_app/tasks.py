"""Queue tasks of the sessions app. Tasks carry ids only and set the tenant context first."""

from __future__ import annotations

from core.models import Organization
from core.tenancy import tenant_context


def run_execute(run_id: str, organization_id: int) -> None:
    from sessions_app.runtime.executor import run_execute as execute

    organization = Organization.objects.get(pk=organization_id)
    with tenant_context(organization):
        execute(run_id)


def runs_reap() -> int:
    from sessions_app.services.runs import runs_reap as reap

    return reap()


def sessions_cleanup() -> dict[str, int]:
    from sessions_app.services.cleanup import sessions_cleanup as cleanup

    return cleanup()
