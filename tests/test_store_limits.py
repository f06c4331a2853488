"""Readers never block writers on SQLite, commits are synced, and on PostgreSQL the query API
runs under a statement timeout; stats refuse a range longer than the documented maximum."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import event

from app import create_app
from app.store.db import Database
from tests.api_data import get, report, store
from tests.support import QueryRecorder, make_settings
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
    postgres_database: str,
) -> None:
    app = create_app(make_settings(postgres_database, api_statement_timeout_ms=50))
    database: Database = app.extensions["database"]
    store(database, "app-one", [report("m1")])  # pg_sleep in the select list runs per row

    def slow(conn, cursor, statement, parameters, *args):  # type: ignore[no-untyped-def]
        if "FROM delivery_reports" in statement:  # the page query, made to take 2 s
            statement = statement.replace("SELECT ", "SELECT pg_sleep(2), ", 1)
        return statement, parameters

    event.listen(database.engine, "before_cursor_execute", slow, retval=True)
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
        event.remove(database.engine, "before_cursor_execute", slow)
        database.engine.dispose()


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
