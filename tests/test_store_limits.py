"""Readers never block writers on SQLite, commits are synced, and on PostgreSQL the query API
runs under a statement timeout; stats refuse a range longer than the documented maximum."""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from app import create_app
from app.query import pg_pages
from app.store.db import Database
from tests.api_data import get, report, store
from tests.support import ADMIN_URL, QueryRecorder, make_settings
from tests.wire import report as wire_report
from tests.wire import signed_form


@pytest.fixture
def sqlite_app(tmp_path: Path, sqlite_template: Path) -> Iterator[Flask]:
    path = tmp_path / "jsms.sqlite3"
    shutil.copy(sqlite_template, path)
    app = create_app(make_settings(f"sqlite:///{path}"))
    yield app
    app.extensions["database"].engine.dispose()


def test_sqlite_commits_are_synced_to_disk(sqlite_app: Flask) -> None:
    database: Database = sqlite_app.extensions["database"]
    with database.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_sqlite_readers_do_not_need_the_write_lock(sqlite_app: Flask) -> None:
    """A writer holds the lock (a long ingest, a purge): reads still answer, at once."""
    database: Database = sqlite_app.extensions["database"]
    store(database, "app-one", [report("m1")])
    writer = sqlite3.connect(str(database.engine.url.database), isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        client = sqlite_app.test_client()
        assert get(client, "/reports").get_json()["items"][0]["msg_id"] == "m1"
        assert get(client, "/stats/delivery").status_code == 200
        assert client.get("/readyz").status_code == 200
    finally:
        writer.rollback()
        writer.close()


def test_callbacks_still_take_the_write_lock_up_front(sqlite_app: Flask) -> None:
    client = sqlite_app.test_client()
    database: Database = sqlite_app.extensions["database"]
    form = signed_form("app-one", "secret-one", "SMS_REPORT", [wire_report("m1")])
    with QueryRecorder(database.engine) as recorder:
        assert client.post("/callbacks/jsms", data=form).status_code == 200
        assert recorder.statements[0] == "BEGIN IMMEDIATE"
        recorder.clear()
        assert get(client, "/reports").status_code == 200
        assert recorder.statements[0] == "BEGIN"


@pytest.mark.postgres
def test_a_slow_api_query_on_postgresql_is_cancelled_with_a_json_503(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(make_settings(postgres_database, api_statement_timeout_ms=50))
    database: Database = app.extensions["database"]
    store(database, "app-one", [report("m1")])  # pg_sleep in the select list runs per row
    compile_for_psycopg = pg_pages.driver_statement

    def slow(dialect, statement):  # type: ignore[no-untyped-def]
        found = compile_for_psycopg(dialect, statement)
        if "FROM delivery_reports" in found.sql:  # the page query, made to take 2 s
            sql = found.sql.replace("SELECT ", "SELECT pg_sleep(2), ", 1)
            return dataclasses.replace(found, sql=sql)
        return found

    monkeypatch.setattr(pg_pages, "driver_statement", slow)
    try:
        response = get(app.test_client(), "/reports")
        assert response.status_code == 503
        assert response.get_json()["error"]["code"] == "query_timeout"
        assert get(app.test_client(), "/sync").status_code == 200
        # The limit is the readers' only: a writer on a connection they used runs under its
        # own (ConnectionLimits, below the group writer's 20 s wait), not theirs.
        with database.engine.connect() as connection:
            assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "15s"
    finally:
        database.engine.dispose()


@pytest.mark.postgres
def test_a_page_on_a_reader_connection_lost_in_use_answers_503_and_the_next_one_200(
    postgres_database: str,
) -> None:
    """psycopg runs a page's statements itself: a lost connection still answers the contract's
    503, and leaves the pool for a fresh one."""
    app = create_app(make_settings(postgres_database))
    database: Database = app.extensions["database"]
    client = app.test_client()
    store(database, "app-one", [report("m1")])
    try:
        assert get(client, "/reports").status_code == 200
        with database.reader_engine.connect() as reader:
            backend = reader.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
        lost = get(client, "/reports")
        assert lost.status_code == 503, lost.get_json()
        assert lost.get_json()["error"]["code"] == "database_unavailable"
        again = get(client, "/reports")
        assert again.status_code == 200
        assert "m1" in [item["msg_id"] for item in again.get_json()["items"]]
    finally:
        database.engine.dispose()


@pytest.mark.postgres
def test_every_api_read_runs_under_the_timeout_and_no_writer_does(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages (autocommit), exports (a transaction per chunk), stats and sync all run under
    API_STATEMENT_TIMEOUT_MS; the callbacks' writer never under it, whichever ran before it."""
    app = create_app(make_settings(postgres_database, api_statement_timeout_ms=4321))
    database: Database = app.extensions["database"]
    store(database, "app-one", [report("m1")])
    seen: dict[str, set[str]] = {"reader": set(), "writer": set(), "page": set()}
    read_page = pg_pages.read_page

    def page(connection, *args):  # type: ignore[no-untyped-def]
        # psycopg runs a page's statements itself, on the connection SQLAlchemy checked out.
        show = connection.connection.driver_connection.execute("SHOW statement_timeout")
        seen["page"].add(show.fetchone()[0])
        return read_page(connection, *args)

    monkeypatch.setattr(pg_pages, "read_page", page)

    def recorder(role: str):  # type: ignore[no-untyped-def]
        def after(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
            seen[role].add(cursor.connection.execute("SHOW statement_timeout").fetchone()[0])

        return after

    hooks = [(database.reader_engine, recorder("reader")), (database.engine, recorder("writer"))]
    for engine, hook in hooks:
        event.listen(engine, "after_cursor_execute", hook)
    client = app.test_client()
    form = signed_form("app-one", "secret-one", "SMS_REPORT", [wire_report("m2")])
    try:
        for _ in range(2):  # the second time on connections that served the other side
            assert get(client, "/reports", app_key="app-one").status_code == 200
            export = get(client, "/reports", format="csv")
            assert export.status_code == 200 and "m1" in export.get_data(as_text=True)
            assert get(client, "/stats/delivery").status_code == 200
            assert get(client, "/sync").status_code == 200
            assert client.post("/callbacks/jsms", data=form).status_code == 200
        # And a plan made for each execution's values, whatever psycopg has prepared.
        with database.reader_engine.connect() as reader, database.engine.connect() as writer:
            assert reader.exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_custom_plan"
            assert writer.exec_driver_sql("SHOW plan_cache_mode").scalar() == "auto"
    finally:
        for engine, hook in hooks:
            event.remove(engine, "after_cursor_execute", hook)
        database.engine.dispose()
    # The writer may have a limit of its own, never the readers'.
    assert seen["reader"] == seen["page"] == {"4321ms"}
    assert seen["writer"] and "4321ms" not in seen["writer"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    "params",
    [
        {"msg_id": "m1"},
        {"app_key": "app-one", "delivered": "false", "since": "2024-05-01", "limit": "100"},
    ],
)
def test_a_lookup_and_a_first_page_send_the_horizon_and_the_page_only(
    client: FlaskClient, database: Database, params: dict[str, str]
) -> None:
    """Two statements, two round trips on PostgreSQL (autocommit): no SET or RESET of the
    statement timeout (the readers' connections carry it from connect), no BEGIN, no COMMIT.
    Once a horizon above the page's rows has been read, the page alone: one round trip."""
    store(database, "app-one", [report("m1", status=4003)])
    # Connects the readers' pool (dialect queries) without reading a horizon.
    assert get(client, "/opt-outs/13800138000", app_key="app-one").status_code == 200
    with wire_trace(database) as sent:
        body = get(client, "/reports", **params).get_json()
    assert [item["msg_id"] for item in body["items"]] == ["m1"]
    horizon, page = _statements(sent, round_trips=2)
    # The horizon, then the page: no SET, RESET, BEGIN or COMMIT went over the wire.
    assert "\"SELECT committed_horizon('delivery_reports')" in horizon
    assert '"SELECT delivery_reports.id,' in page  # (the trace cuts it at its first line)

    with wire_trace(database) as sent:
        again = get(client, "/reports", **params).get_json()
    assert again == body
    (page,) = _statements(sent, round_trips=1)
    assert '"SELECT delivery_reports.id,' in page


def _statements(sent: list[str], round_trips: int) -> list[str]:
    """The statements the client sent, checking how many round trips it took: a simple Query
    (no parameters) or the extended protocol's Sync each."""
    client_said = [line for line in sent if line.startswith("F\t")]
    messages = [line.split("\t")[2] for line in client_said]
    assert messages.count("Query") + messages.count("Sync") == round_trips, client_said
    statements = [line for line in client_said if line.split("\t")[2] in ("Query", "Parse")]
    assert len(statements) == round_trips, statements
    return statements


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_opt_out_check_sends_one_select_only(client: FlaskClient, database: Database) -> None:
    """The check before every send: one primary-key read, one round trip, in autocommit."""
    assert get(client, "/opt-outs/13800138000", app_key="app-one").status_code == 200
    with wire_trace(database) as sent:
        body = get(client, "/opt-outs/13800138000", app_key="app-one").get_json()
    assert body["opted_out"] is False
    client_said = [line for line in sent if line.startswith("F\t")]
    messages = [line.split("\t")[2] for line in client_said]
    assert messages.count("Query") + messages.count("Sync") == 1, client_said
    statements = [line for line in client_said if line.split("\t")[2] in ("Query", "Parse")]
    assert len(statements) == 1 and '"SELECT opt_outs.opted_out' in statements[0], statements


@contextmanager
def wire_trace(database: Database) -> Iterator[list[str]]:
    """The protocol messages (libpq's trace) exchanged on the readers' connections checked out
    inside the block, one line each: `F` for what the client sent, `B` for the answers."""
    sent: list[str] = []
    with tempfile.TemporaryFile("w+") as trace:

        def on_checkout(dbapi_connection, _record, _proxy):  # type: ignore[no-untyped-def]
            dbapi_connection.pgconn.trace(trace.fileno())
            flags = psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE
            dbapi_connection.pgconn.set_trace_flags(flags)

        def on_checkin(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            dbapi_connection.pgconn.untrace()  # flushes; the pool's reset is traced before

        engine = database.reader_engine
        event.listen(engine, "checkout", on_checkout)
        event.listen(engine, "checkin", on_checkin)
        try:
            yield sent
        finally:
            event.remove(engine, "checkout", on_checkout)
            event.remove(engine, "checkin", on_checkin)
        trace.seek(0)
        sent.extend(trace.read().splitlines())


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"bucket": "hour", "since": "2024-01-01", "until": "2024-02-02"}, 400),
        ({"bucket": "hour", "since": "2024-01-01", "until": "2024-02-01"}, 200),
        ({"bucket": "day", "since": "2023-01-01", "until": "2024-01-03"}, 400),
        ({"bucket": "day", "since": "2023-01-01", "until": "2024-01-01"}, 200),
        ({"since": "2000-01-01"}, 200),  # an open range: the statement timeout bounds it
    ],
)
def test_stats_refuse_a_range_longer_than_the_maximum(
    app: Flask, params: dict[str, str], status: int
) -> None:
    response = get(app.test_client(), "/stats/delivery", **params)
    assert response.status_code == status, response.get_json()
    if status == 400:
        assert response.get_json()["error"]["parameter"] == "since"
