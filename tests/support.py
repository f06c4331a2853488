"""Shared test plumbing (not fixtures): the configured apps and token, settings, row counts,
throwaway PostgreSQL databases (also used by bench/), and seams on an engine: the statements it
sends (`QueryRecorder`) and statements the database refuses (`failing_statements`)."""

from __future__ import annotations

import io
import logging
import os
import re
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import ColumnElement, Engine, event, func, select, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from app.config import Settings
from app.logs import json_handler
from app.store.db import Database
from app.store.schema import upgrade_to_head

APPS = {"app-one": "secret-one", "app-two": "secret-two"}
TOKEN = "test-token"
# A short upstream window keeps pull tests fast; the fake enforces it in real wall time.
FAKE_WINDOW = 0.2
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
        import pytest  # bench/ imports this module without pytest installed

        pytest.fail(f"CI=true requires PostgreSQL: {reason}", pytrace=False)
    return reason


@contextmanager
def throwaway_postgres(admin_url: str = ADMIN_URL, prefix: str = "jsms_test") -> Iterator[str]:
    """A fresh database `<prefix>_<random>` migrated to head; its SQLAlchemy URL; dropped after."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        url = f"{base}/{name}"
        upgrade_to_head(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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


def row_count(where: Database | Session | str, model: Any, *conditions: ColumnElement[bool]) -> int:
    """Rows of `model` matching `conditions`, read through a session, a Database, or a URL
    (then through an engine of its own, disposed afterwards)."""
    statement = select(func.count()).select_from(model).where(*conditions)
    if isinstance(where, Session):
        return int(where.scalar(statement) or 0)
    database = Database(where) if isinstance(where, str) else where
    try:
        with database.session() as session:
            return int(session.scalar(statement) or 0)
    finally:
        if isinstance(where, str):
            database.engine.dispose()


def guard_postgres(session: Session) -> None:
    """Bound what a test's own PostgreSQL session can do to the run: a lock it waits for, a
    statement, or its being left idle in a transaction (then the server ends it) all time out,
    so a regression fails the test instead of hanging CI."""
    session.execute(text("SET lock_timeout = '20s'"))
    session.execute(text("SET statement_timeout = '60s'"))
    session.execute(text("SET idle_in_transaction_session_timeout = '90s'"))


def throwaway_spool() -> Path:
    """An empty directory for a puller's spool (every Puller has one: the last copy of a batch
    the store refused), for tests that do not look at it."""
    return Path(tempfile.mkdtemp(prefix="jsms-spool-"))


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if not match:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(2))
    return 0.0


@contextmanager
def json_lines(logger_name: str) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through the service's JSON handler (phones masked) into a string."""
    stream = io.StringIO()
    handler = json_handler()
    handler.setStream(stream)  # type: ignore[attr-defined]
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


class QueryRecorder:
    """What an engine sends the database while inside `with QueryRecorder(engine)`.

    `statements`: each statement as a cursor executes it (so SQLite's `BEGIN IMMEDIATE` is one;
    PostgreSQL's BEGIN, which the driver sends implicitly, is not). `commits`: transactions
    committed (a DBAPI commit, not a cursor statement).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.statements: list[str] = []
        self.commits = 0

    def heads(self) -> list[str]:
        """Each statement's first three words (`INSERT INTO raw_events`, `BEGIN IMMEDIATE`)."""
        return [" ".join(statement.split()[:3]) for statement in self.statements]

    def clear(self) -> None:
        """Forget what was recorded so far; keep recording."""
        self.statements.clear()
        self.commits = 0

    def _statement(self, conn: object, cursor: object, statement: str, *args: object) -> None:
        self.statements.append(statement)

    def _commit(self, conn: object) -> None:
        self.commits += 1

    def __enter__(self) -> QueryRecorder:
        event.listen(self.engine, "before_cursor_execute", self._statement)
        event.listen(self.engine, "commit", self._commit)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._statement)
        event.remove(self.engine, "commit", self._commit)


class Fault:
    """A fault `failing_statements` injects: how many statements it refused, and a way to end
    it early (the database coming back while the test goes on)."""

    def __init__(self) -> None:
        self.hits = 0
        self.healed = False

    def heal(self) -> None:
        """Refuse nothing from now on."""
        self.healed = True


def _values(parameters: object) -> Iterator[object]:
    """Every bound value, whatever shape the driver got them in (a dict, a tuple, or a list of
    either for executemany)."""
    if isinstance(parameters, dict):
        parameters = list(parameters.values())
    if isinstance(parameters, (list, tuple)):
        for value in parameters:
            yield from _values(value)
    else:
        yield parameters


@contextmanager
def failing_statements(
    engine: Engine,
    matching: str,
    error: type[DBAPIError] = OperationalError,
    *,
    carrying: str | None = None,
    times: int | None = None,
) -> Iterator[Fault]:
    """The database refuses each statement that starts with `matching` (and, if given, binds a
    value equal to `carrying`), raising `error` as the driver would, up to `times` times (every
    time when None), until the block ends or the yielded `Fault` is healed.

    Faults nest: listeners run in the order the blocks were entered, so an outer `times=1`
    fault takes the first hit and an inner one the later hits.
    """
    fault = Fault()

    def refuse(conn: object, cursor: object, statement: str, parameters: object,
               *args: object) -> None:  # fmt: skip
        if fault.healed or (times is not None and fault.hits >= times):
            return
        if not statement.startswith(matching):
            return
        if carrying is not None and carrying not in _values(parameters):
            return
        fault.hits += 1
        raise error(statement, {}, Exception("injected fault"))

    event.listen(engine, "before_cursor_execute", refuse)
    try:
        yield fault
    finally:
        event.remove(engine, "before_cursor_execute", refuse)


@contextmanager
def holding_the_writer(
    engine: Engine, seconds: float = 10.0
) -> Iterator[tuple[threading.Event, threading.Event]]:
    """The first group's first statement waits (at most `seconds`) until released: callbacks
    arriving meanwhile queue up behind it and form the next group. Yields (entered, release)."""
    entered, release = threading.Event(), threading.Event()

    def hold(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        if statement.startswith("INSERT INTO callback_signatures") and not entered.is_set():
            entered.set()
            release.wait(seconds)

    event.listen(engine, "before_cursor_execute", hold)
    try:
        yield entered, release
    finally:
        release.set()
        event.remove(engine, "before_cursor_execute", hold)
