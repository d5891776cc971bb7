"""How the app talks to PostgreSQL: parameters bound on the server, and statements a connection runs
often prepared there, so they are not planned again on every run (``DB_PREPARED_STATEMENTS``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from core.tenancy import tenant_context
from sessions_app.models import Session

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL only")
def test_a_statement_run_often_on_a_connection_is_prepared_on_the_server(world):
    def prepared() -> set[str]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement FROM pg_prepared_statements")
            return {row[0] for row in cursor.fetchall()}

    before = prepared()
    with tenant_context(world.a.org):
        for _ in range(6):  # psycopg prepares a statement on its fifth run on a connection
            assert Session.objects.filter(pk=world.a.session.pk).exists()
    new = prepared() - before
    assert any('"sessions_app_session"' in statement and "$1" in statement for statement in new), new


@pytest.mark.parametrize("setting", ["1", "0"])
def test_prepared_statements_can_be_turned_off_for_poolers_that_cannot_keep_them(setting, tmp_path):
    env = dict(os.environ, DATA_DIR=str(tmp_path), DB_PREPARED_STATEMENTS=setting)
    env["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/anything"
    code = "import json, config.settings as s; print(json.dumps(s.DATABASES['default'].get('OPTIONS', {})))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    options = json.loads(done.stdout.strip().splitlines()[-1])
    if setting == "1":
        assert options["server_side_binding"] is True and options["prepare_threshold"] == 5
    else:
        assert "server_side_binding" not in options and "prepare_threshold" not in options
