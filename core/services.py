"""Writes of the tenancy core: memberships and organization settings."""

from __future__ import annotations

from django.db import transaction

from core.access import Access
from core.errors import ErrorCode, SwitchboardError
from core.models import Membership, Organization, Role


def check_owner_rules(access: Access, membership: Membership | None, new_role: str | None) -> None:
    touches_owner = new_role == Role.OWNER or (membership is not None and membership.role == Role.OWNER)
    if touches_owner and not access.has_role(Role.OWNER):
        raise SwitchboardError(ErrorCode.PERMISSION_DENIED, "Only owners can grant or change the owner role.")
    if membership is not None and membership.role == Role.OWNER and new_role != Role.OWNER:
        owners = Membership.objects.filter(role=Role.OWNER).count()
        if owners <= 1:
            raise SwitchboardError(
                ErrorCode.INVALID_STATE, "An organization keeps at least one owner.", {"owners": owners}
            )


def membership_add(*, access: Access, user, role: str) -> Membership:
    """Add ``user`` to the access's organization with ``role``; ``CONFLICT`` if already a member."""
    check_owner_rules(access, None, role)
    with transaction.atomic():
        if Membership.objects.filter(user=user).exists():
            raise SwitchboardError(ErrorCode.CONFLICT, "That user is already a member.")
        return Membership.objects.create(organization=access.organization, user=user, role=role)


def organization_lock(organization_id: int) -> Organization:
    """Lock the organization's row until the transaction ends. Owner changes take it before counting the
    owners: locking only the membership being changed let two owners demote each other at once, each
    counting the other, and leave none."""
    return Organization.objects.select_for_update().get(pk=organization_id)


def membership_change_role(*, access: Access, membership: Membership, role: str) -> Membership:
    """Change a member's role under the organization's lock, then the membership's."""
    with transaction.atomic():
        organization_lock(membership.organization_id)
        locked = Membership.objects.select_for_update().get(pk=membership.pk)
        check_owner_rules(access, locked, role)
        locked.role = role
        locked.save(update_fields=["role"])
    return locked


def membership_remove(*, access: Access, membership: Membership) -> None:
    """Remove a member under the organization's lock, then the membership's."""
    with transaction.atomic():
        organization_lock(membership.organization_id)
        locked = Membership.objects.select_for_update().get(pk=membership.pk)
        check_owner_rules(access, locked, None)
        locked.delete()


def organization_update(organization: Organization, **fields) -> Organization:
    for name, value in fields.items():
        setattr(organization, name, value)
    organization.save(update_fields=list(fields))
    return organization
