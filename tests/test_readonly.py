"""`jsms grant-readonly ROLE`: a BI role reads the records and views, and nothing else."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from flask.testing import FlaskCliRunner
from psycopg import errors, sql
from sqlalchemy.engine import make_url

from app.store.readonly import READABLE_TABLES, READABLE_VIEWS
from tests.support import ADMIN_URL, APPS
from tests.wire import report, signed_form

UNREADABLE = ("pull_leases", "sync_state", "pull_call_counts", "refused_callbacks")


def libpq_url(database_url: str) -> str:
    """The test database's URL as psycopg takes it."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(False)


@pytest.fixture
def bi_role(database_url: str) -> Iterator[str]:
    """A fresh role (roles are per cluster: a unique name, dropped after)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("roles are a PostgreSQL feature")
    role = f"bi_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    yield role
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_role_reads_every_view_and_record_table_and_nothing_else(
    database_url: str, bi_role: str, runner: FlaskCliRunner
) -> None:
    form = signed_form("app-one", APPS["app-one"], "SMS_REPORT", [report("m1")])
    assert runner.app.test_client().post("/callbacks/jsms", data=form).status_code == 200
    for _ in range(2):  # idempotent
        result = runner.invoke(args=["jsms", "grant-readonly", bi_role])
        assert result.exit_code == 0, result.output
    assert f"role {bi_role} may read, in schema public:" in result.output

    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(bi_role)))
        for name in READABLE_TABLES + READABLE_VIEWS:
            conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(name))).fetchall()
        rate = conn.execute("SELECT total FROM daily_delivery_rate").fetchone()
        assert rate == (1,)
        for name in UNREADABLE:
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(name)))
        for statement in (
            "INSERT INTO delivery_reports (app_key, msg_id, phone, status, delivered, "
            "received_at, source, ingested_at) VALUES ('a', 'm', 'p', 1, false, now(), 'x', now())",
            "UPDATE replies SET content = 'x'",
            "DELETE FROM raw_events",
            "TRUNCATE review_results",
        ):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(statement)


def test_a_privilege_granted_by_hand_is_taken_back(
    database_url: str, bi_role: str, runner: FlaskCliRunner
) -> None:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        grant = "GRANT SELECT ON pull_leases TO {}; GRANT INSERT ON delivery_reports TO {}"
        conn.execute(sql.SQL(grant).format(sql.Identifier(bi_role), sql.Identifier(bi_role)))
    assert runner.invoke(args=["jsms", "grant-readonly", bi_role]).exit_code == 0
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT table_name, privilege_type FROM information_schema.role_table_grants "
            "WHERE grantee = %s ORDER BY table_name",
            (bi_role,),
        ).fetchall()
    assert rows == sorted((name, "SELECT") for name in READABLE_TABLES + READABLE_VIEWS)


def test_refuses_politely(database_url: str, runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["jsms", "grant-readonly", "nobody_here"])
    assert result.exit_code == 1
    if database_url.startswith("sqlite"):
        assert "grant-readonly is for PostgreSQL; this database is SQLite" in result.output
        return
    assert "there is no role 'nobody_here': create it first" in result.output
    itself = runner.invoke(args=["jsms", "grant-readonly", "postgres"])
    assert itself.exit_code == 1 and "name a separate role for the BI tool" in itself.output
    assert "Traceback" not in result.output + itself.output
