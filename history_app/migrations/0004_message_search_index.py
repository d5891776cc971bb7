"""The full-text index on message content: a generated tsvector column + GIN index on PostgreSQL, an
external-content FTS5 table with triggers on SQLite. See history_app/search/schema.py."""

from django.db import migrations


def install(apps, schema_editor):
    from history_app.search import schema

    schema.install(schema_editor.connection)


def uninstall(apps, schema_editor):
    from history_app.search import schema

    schema.uninstall(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("history_app", "0003_export"),
        ("sessions_app", "0004_checkpoint_providercredential"),
    ]

    operations = [migrations.RunPython(install, uninstall, elidable=False)]
