"""Create the demo organization, an admin user and a demo agent. Idempotent."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from core.models import Membership, Organization, Role
from core.tenancy import tenant_context
from sessions_app.models import Agent


class Command(BaseCommand):
    help = "Create the demo organization, admin user and demo agent (prints the password once)."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", default=None, help="Default: a random one, printed once.")
        parser.add_argument("--org", default="demo", help="Slug of the demo organization.")

    @transaction.atomic
    def handle(self, *args, username: str, password: str | None, org: str, **options):
        User = get_user_model()
        organization, _ = Organization.objects.get_or_create(slug=org, defaults={"name": "Demo organization"})
        user = User.objects.filter(username=username).first()
        created = user is None
        if created:
            password = password or secrets.token_urlsafe(12)
            user = User.objects.create_superuser(
                username=username, email=f"{username}@example.com", password=password
            )
        with tenant_context(organization):
            Membership.objects.get_or_create(
                organization=organization, user=user, defaults={"role": Role.OWNER}
            )
            Agent.objects.get_or_create(
                organization=organization,
                slug="assistant",
                defaults={
                    "name": "Demo assistant",
                    "description": "Runs on the built-in offline demo model unless a provider is configured.",
                    "system_prompt": "You are a helpful assistant.",
                    "tools": ["calculator", "current_time", "search_history"],
                },
            )
        if created:
            self.stdout.write(
                self.style.SUCCESS(
                    "\n  Admin user created (shown once):\n"
                    f"    username: {username}\n    password: {password}\n"
                    f"  Organization: {organization.slug}\n"
                )
            )
        else:
            self.stdout.write(f"Demo data present (organization {organization.slug}, user {username}).")
