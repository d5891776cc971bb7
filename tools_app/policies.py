"""Which tools a run may use and whether a call needs a person (strictest setting wins).

Layers: the tool's default policy, the organization's setting (enabled, and ``auto`` / ``manual`` /
``deny``), the agent's allowed subset and approval mode, and the session's approval mode. ``deny`` beats
``manual`` beats ``auto``. Disabled and denied tools are never offered to the model.
"""

from __future__ import annotations

from tools_app.models import ToolPolicy, ToolPolicyChoice
from tools_app.registry import ToolSpec, all_tools, get_tool

_STRICTNESS = {ToolPolicyChoice.AUTO: 0, ToolPolicyChoice.MANUAL: 1, ToolPolicyChoice.DENY: 2}


def strictest(*policies: str | None) -> str:
    return max((p for p in policies if p), key=lambda p: _STRICTNESS[ToolPolicyChoice(p)])


def organization_policies() -> dict[str, ToolPolicy]:
    """The current organization's tool settings by tool name. Needs the tenant context."""
    return {p.tool_name: p for p in ToolPolicy.objects.all()}


def organization_tools() -> list[tuple[ToolSpec, str]]:
    """Tools the organization can use, each with its organization-level policy."""
    policies = organization_policies()
    usable = []
    for spec in all_tools():
        setting = policies.get(spec.name)
        if not spec.available() or (setting is not None and not setting.enabled):
            continue
        policy = setting.policy if setting and setting.policy else spec.default_policy
        usable.append((spec, policy))
    return usable


def effective_policy(spec: ToolSpec, org_policy: str, agent, session_config: dict) -> str:
    return strictest(
        org_policy,
        ToolPolicyChoice.MANUAL if agent.approval_mode == "manual" else None,
        ToolPolicyChoice.MANUAL if session_config.get("approval_mode") == "manual" else None,
    )


def tools_for_run(session, agent) -> dict[str, tuple[ToolSpec, str]]:
    """The tools offered to the model for a session: name → (spec, effective policy), denied ones left out."""
    from sessions_app.runtime.context import effective_config

    allowed = set(agent.tools or [])
    if not allowed:  # an agent without tools: no need to read the organization's tool settings
        return {}
    config = effective_config(session)
    offered = {}
    for spec, org_policy in organization_tools():
        if spec.name not in allowed:
            continue
        policy = effective_policy(spec, org_policy, agent, config)
        if policy != ToolPolicyChoice.DENY:
            offered[spec.name] = (spec, policy)
    return offered


def policy_for_direct_task(name: str, session) -> tuple[ToolSpec | None, str]:
    """A person running a tool without the model: the organization's policy, the approval mode of the
    session's agent and the session's mode apply, as for the model. (The agent's allowed subset does not:
    it limits what the model may call, and a person may run any tool the organization allows.)"""
    from sessions_app.runtime.context import effective_config

    spec = get_tool(name)
    for usable, org_policy in organization_tools():
        if usable.name == name:
            return spec, effective_policy(spec, org_policy, session.agent, effective_config(session))
    return spec, ToolPolicyChoice.DENY


def call_allowed_now(call) -> bool:
    """Whether the organization's settings still let a recorded call run: its tool enabled and not denied
    and, for a model's call, still one of its agent's tools. Settings can change while a call waits for a
    decision or for a worker."""
    session = call.session
    if call.run_id is None:
        return policy_for_direct_task(call.tool_name, session)[1] != ToolPolicyChoice.DENY
    return call.tool_name in tools_for_run(session, session.agent)
