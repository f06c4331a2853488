"""Fixtures: the same tests run on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import text

from app import create_app
from app.config import Settings
from app.store.db import Database, make_engine, upgrade_to_head
from app.store.models import Base
from tests.fake_jsms import FakeJsms

APPS = {"app-one": "secret-one", "app-two": "secret-two"}
TOKEN = "test-token"
# Where tests may create throwaway databases; trust auth on the CI machines.
ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def postgres_unavailable_reason() -> str | None:
    """None when PostgreSQL is reachable; else why not (and CI turns that into a failure)."""
    try:
        with psycopg.connect(ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        reason = f"no PostgreSQL at {ADMIN_URL} ({type(exc).__name__}); set TEST_POSTGRES_ADMIN_URL"
    if IN_CI:
        pytest.fail(f"CI=true requires PostgreSQL: {reason}", pytrace=False)
    return reason


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
    name = f"jsms_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    upgrade_to_head(url)
    yield url
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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


def make_settings(database_url: str, **overrides: object) -> Settings:
    """Settings for tests: no .env, no surprise from the environment."""
    values: dict[str, object] = {
        "database_url": database_url,
        "jsms_apps": dict(APPS),
        "api_tokens": (TOKEN,),
        "jsms_api_base_url": "http://127.0.0.1:9",
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


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


# A short upstream window keeps pull tests fast; the fake enforces it in real wall time.
FAKE_WINDOW = 0.2


@pytest.fixture
def fake_jsms() -> Iterator[FakeJsms]:
    """A running fake JSMS upstream serving APPS, with an empty backlog and a 0.2 s window."""
    fake = FakeJsms(APPS, window=FAKE_WINDOW).start()
    yield fake
    fake.stop()
