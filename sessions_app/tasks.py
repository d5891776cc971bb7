"""Queue tasks of the sessions app. Tasks carry ids only and set the tenant context first."""

from __future__ import annotations

from core.models import Organization
from core.tenancy import tenant_context


def run_execute(run_id: str, organization_id: int) -> None:
    from sessions_app.runtime.executor import run_execute as execute
    from sessions_app.services.runs import run_peek

    # The run is read first, scoped by the task's organization id, and brings its organization along:
    # one query where reading the organization and then the run took two, before the model request.
    with tenant_context(Organization(pk=organization_id)):
        peeked = run_peek(run_id)
    organization = peeked.session.organization if peeked else Organization.objects.get(pk=organization_id)
    with tenant_context(organization):
        execute(run_id, peeked=peeked)


def runs_reap() -> int:
    from sessions_app.services.runs import runs_reap as reap

    return reap()


def sessions_cleanup() -> dict[str, int]:
    from sessions_app.services.cleanup import sessions_cleanup as cleanup

    return cleanup()
