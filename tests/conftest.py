"""Fixtures only (plumbing is in tests/support.py): the same tests run on a real SQLite file
and a real PostgreSQL database."""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import text

from app import create_app
from app.config import Settings
from app.store.db import Database, make_engine
from app.store.models import Base
from app.store.schema import upgrade_to_head
from tests.fake_jsms import FakeJsms
from tests.support import (
    APPS,
    FAKE_WINDOW,
    QueryRecorder,
    holding_the_writer,
    make_settings,
    postgres_unavailable_reason,
    throwaway_postgres,
)


@pytest.fixture(autouse=True)
def _restore_log_levels() -> Iterator[None]:
    """A `jsms` command lowers the root logger to WARNING for its person (app/cli.py): put the
    level back, so the next test's INFO lines are not lost."""
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    upgrade_to_head(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session, dropped at the end."""
    reason = postgres_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with throwaway_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "jsms.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_database")
    engine = make_engine(url)
    # The business time zone stays as migrated (Asia/Shanghai): the views need its rows.
    kept = {"business_timezone"}
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables if t.name not in kept)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY"))
    engine.dispose()
    return url


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app(settings)
    app.config["TESTING"] = True
    yield app
    app.extensions["database"].engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def store(database_url: str) -> Iterator[Database]:
    """The migrated database through an engine of its own (as a separate process would)."""
    database = Database(database_url)
    yield database
    database.engine.dispose()


@pytest.fixture
def database(app: Flask) -> Database:
    """The app's database, for looking at what was stored."""
    db: Database = app.extensions["database"]
    return db


@pytest.fixture
def fake_jsms() -> Iterator[FakeJsms]:
    """A running fake JSMS upstream serving APPS, with an empty backlog and a 0.2 s window."""
    fake = FakeJsms(APPS, window=FAKE_WINDOW).start()
    yield fake
    fake.stop()


@pytest.fixture
def query_recorder(database: Database) -> Iterator[QueryRecorder]:
    """Records the statements (and commits) the app's engine sends, for the whole test;
    `query_recorder.clear()` starts afresh. Another engine: `with QueryRecorder(engine)`."""
    with QueryRecorder(database.engine) as recorder:
        yield recorder


@pytest.fixture
def held_writer(database: Database) -> Iterator[tuple[threading.Event, threading.Event]]:
    """The app's group writer held at its first statement (`holding_the_writer`)."""
    with holding_the_writer(database.engine) as held:
        yield held
