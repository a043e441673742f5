"""docker compose runs no default password and connects as a role that owns the app's schema
and nothing more; its init script is run here against the test server, then migrated as it."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml

from backorder.db.engine import migrate
from backorder.embedded import _bin_dir

ROOT = Path(__file__).resolve().parents[2]
INIT_SQL = ROOT / "deploy" / "postgres-init.sql"


def test_compose_requires_every_password_and_hard_codes_none() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    db = compose["services"]["db"]["environment"]
    api = compose["services"]["api"]["environment"]
    assert db["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert db["BACKORDER_DB_PASSWORD"].startswith("${BACKORDER_DB_PASSWORD:?")
    assert api["BACKORDER_MASTER_KEY"].startswith("${BACKORDER_MASTER_KEY:?")
    url = api["DATABASE_URL"]
    assert url.startswith("postgresql://backorder:${BACKORDER_DB_PASSWORD:?")
    assert db["POSTGRES_USER"] != "backorder"  # the app's role is not the superuser
    mounts = " ".join(compose["services"]["db"]["volumes"])
    assert "deploy/postgres-init.sh:/docker-entrypoint-initdb.d/" in mounts
    assert "deploy/postgres-init.sql:" in mounts


def _psql() -> str:
    return shutil.which("psql") or str(_bin_dir(Path("/nonexistent")) / "psql")


@pytest.fixture
def app_database(server_url: str) -> Iterator[tuple[str, str]]:
    """A fresh database with compose's init script run in it: (superuser URL, app role)."""
    name, role = f"bo_compose_{uuid.uuid4().hex[:8]}", f"bo_app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, query = server_url.partition("?")
    url = f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
    try:
        run = subprocess.run(
            [_psql(), url, "-v", "ON_ERROR_STOP=1", "-v", f"app_role={role}",
             "-v", "app_password=not-used-under-trust", "-f", str(INIT_SQL)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        yield url, role
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_the_app_role_migrates_its_own_schema_and_is_no_superuser(
    app_database: tuple[str, str],
) -> None:
    admin_url, role = app_database
    app_url = admin_url.replace("://postgres@", f"://{role}@", 1)
    assert app_url != admin_url
    migrate(app_url.replace("postgresql://", "postgresql+psycopg://", 1))

    with psycopg.connect(app_url) as conn:
        flags = conn.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert flags == (False, False, False)
        owners = conn.execute(
            "SELECT DISTINCT schemaname, tableowner FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        assert owners == [("backorder", role)]  # every table, alembic_version included
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE public.planted (x int)")
        conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM pg_authid")
