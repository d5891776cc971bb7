"""The full-text index itself: installed by the migration, kept in sync on write, repaired after rebuilds."""

from __future__ import annotations

import pytest
from django.db import connection

from core.tenancy import tenant_context
from history_app.search import parse_query, schema, search_messages
from history_app.search.schema import ensure_search_index
from sessions_app.models import Message
from tests.history_app.builders import add_message


def found(tenant, q: str) -> list[str]:
    with tenant_context(tenant.org):
        page = search_messages(parse_query(q), organization=tenant.org)
    return [str(hit.message_id) for hit in page.hits]


def test_the_migration_installed_the_index(db):
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT attgenerated FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attname = 'search_vector'",
                [schema.MESSAGE_TABLE],
            )
            assert cursor.fetchone() == ("s",)  # a stored generated column
            cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [schema.PG_INDEX])
            assert "gin (search_vector)" in cursor.fetchone()[0]
        else:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name")
            assert set(schema.FTS_TRIGGERS) <= {row[0] for row in cursor.fetchall()}
            cursor.execute("SELECT sql FROM sqlite_master WHERE name = %s", [schema.FTS_TABLE])
            assert "fts5" in cursor.fetchone()[0]
    assert ensure_search_index(connection) is False  # nothing to repair


def test_bulk_writes_are_indexed_too(world):
    with tenant_context(world.a.org):
        Message.objects.bulk_create(
            [
                Message(
                    organization=world.a.org,
                    session=world.a.session,
                    seq=n,
                    role="user",
                    content=f"bulk {n} kumquat",
                )
                for n in (101, 102)
            ]
        )
    assert len(found(world.a, "kumquat")) == 2


@pytest.mark.django_db(transaction=True)
def test_search_survives_a_rebuild_of_the_message_table(world):
    before = add_message(world.a, "before the rebuild: kiwifruit")
    if connection.vendor == "sqlite":
        # What Django's SQLite schema editor does to alter a column: copy into a new table, drop the old
        # one (and with it our triggers), rename. The rowids the FTS table is keyed by are renumbered.
        with connection.schema_editor() as editor:
            editor._remake_table(Message)
        assert ensure_search_index(connection) is True
    else:
        # A generated column is part of the table: ALTER TABLE keeps it and nothing needs repair.
        assert ensure_search_index(connection) is False
    after = add_message(world.a, "after the rebuild: kiwifruit")
    assert sorted(found(world.a, "kiwifruit")) == sorted([str(before.pk), str(after.pk)])
    assert ensure_search_index(connection) is False


@pytest.mark.django_db(transaction=True)
def test_the_reindex_command_keeps_search_working(world):
    from django.core.management import call_command

    message = add_message(world.a, "reindexed durian")
    call_command("search_reindex", stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert found(world.a, "durian") == [str(message.pk)]
