"""Rebuild the message search index (SQLite: after a VACUUM, which may renumber the rowids it is keyed by)."""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import connections

from history_app.search.schema import install, rebuild


class Command(BaseCommand):
    help = "Re-index every message for full-text search."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--database", default="default")

    def handle(self, *args, **options) -> None:
        connection = connections[options["database"]]
        install(connection)  # idempotent; puts back anything missing
        rebuild(connection)
        self.stdout.write(f"search index rebuilt ({connection.vendor})")
