"""The store's connection lifetime: one engine per process, one session per unit of work
(a request's session is opened and closed by the web side, `app/web_db.py`)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg import RawCursor
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

# Errors that mean "the database cannot be reached right now", not "this input is bad".
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError)


class DatabaseUnavailable(Exception):
    """The database cannot be reached, or did not commit in time: nothing was stored, and the
    caller may retry. `code` names the case (`database_unavailable`, `database_not_migrated`)."""

    code = "database_unavailable"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """How long one statement may run, and wait for a lock, on a PostgreSQL connection; and
    after how long unacknowledged data declares the connection dead (TCP_USER_TIMEOUT), with
    keepalive probes finding a half-open one while it idles. All in milliseconds."""

    statement_timeout_ms: int
    lock_timeout_ms: int
    tcp_user_timeout_ms: int

    @classmethod
    def below(cls, wait_seconds: float) -> ConnectionLimits:
        """Limits that fail a stuck statement before a request waiting `wait_seconds` for it
        gives up (the group writer's wait): the worker answers 503 and moves on."""
        wait_ms = int(wait_seconds * 1000)
        return cls(wait_ms * 3 // 4, wait_ms // 2, wait_ms * 3 // 4)


def postgres_connect_args(
    limits: ConnectionLimits | None, session_settings: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """libpq parameters of every service connection: sessions in UTC; commits durable whatever
    the server's or database's default (`synchronous_commit = on`: a callback answered 200 is
    on disk, not in a WAL buffer); with `limits`, the statement and lock timeouts, TCP
    keepalives and TCP_USER_TIMEOUT; then `session_settings`, which win over the limits (the
    readers' own statement timeout)."""
    # Sessions in UTC: timestamptz values arrive as UTC, and date_trunc means UTC days.
    settings = {"timezone": "UTC", "synchronous_commit": "on"}
    args: dict[str, Any] = {"connect_timeout": 5}
    if limits is not None:
        settings |= {
            "statement_timeout": str(limits.statement_timeout_ms),
            "lock_timeout": str(limits.lock_timeout_ms),
        }
        args |= {
            "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
            "keepalives_count": 3, "tcp_user_timeout": limits.tcp_user_timeout_ms,
        }  # fmt: skip
    settings |= session_settings or {}
    return args | {"options": " ".join(f"-c {name}={value}" for name, value in settings.items())}


def make_engine(
    url: str,
    pool_timeout: float = 5.0,
    limits: ConnectionLimits | None = None,
    session_settings: Mapping[str, str] | None = None,
    raw_placeholders: bool = False,
) -> Engine:
    """An engine tuned for the backend: WAL + immediate transactions on SQLite, pre-ping on PG.
    `pool_timeout`: how long to wait for a free pooled connection (PostgreSQL); `limits` and
    `session_settings`: what every PostgreSQL connection starts with (`postgres_connect_args`;
    libpq startup options, so no unit of work needs a SET for them). `raw_placeholders`
    (PostgreSQL): SQLAlchemy writes `$1, $2, …` and psycopg sends them as written (`RawCursor`),
    not rewriting `%(name)s` on every execution, which it caches only under 50 parameters and
    4 kB: a group commit's statements paid it in full (bench/README.md, "Callback ingest")."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            # Best effort: if it cannot be made, connecting fails later and requests answer 503.
            with suppress(OSError):
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # hide_parameters: a failed statement's error must not carry phone numbers into logs.
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
        _make_sqlite_transactional(engine)
        return engine
    connect_args = postgres_connect_args(limits, session_settings)
    placeholders: dict[str, Any] = {}
    if raw_placeholders:
        connect_args["cursor_factory"] = RawCursor
        placeholders["paramstyle"] = "numeric_dollar"
    engine = create_engine(
        url,
        hide_parameters=True,
        pool_size=5,
        max_overflow=5,
        pool_timeout=pool_timeout,
        connect_args=connect_args,
        **placeholders,
    )
    _ping_when_idle(engine)
    return engine


# Execution option: a unit of work that only reads (GET requests, health checks).
READ_ONLY = "jsms_read_only"


def reader_settings(statement_timeout_ms: int) -> dict[str, str]:
    """What the readers' PostgreSQL connections start with: the statement timeout (0: none),
    and a plan made for each execution's values. psycopg prepares a statement run 5 times, and
    PostgreSQL may then switch to a generic plan, which cannot use the partial index on
    undelivered reports for `delivered=false` (measured: a first page 1.5-3.7 ms instead of
    0.5 ms, bench/README.md); planning again costs ~0.1 ms, in EXPLAIN ANALYZE's figure too."""
    settings = {"plan_cache_mode": "force_custom_plan"}
    if statement_timeout_ms:
        settings["statement_timeout"] = str(int(statement_timeout_ms))
    return settings


# A pooled connection idle longer than this is pinged before use: it may have died meanwhile.
PING_AFTER_IDLE_SECONDS = 5.0


def _ping_when_idle(engine: Engine) -> None:
    """`pool_pre_ping`, but only for connections that sat idle.

    Pre-pinging every checkout cost a round trip and ~5% of a worker's CPU per callback. A
    connection in steady use has just proved itself alive; one that sat idle (a quiet night, a
    database restart) is pinged, and replaced if dead, before anyone uses it. One that dies in
    mid-use fails its request with 503 (JSMS retries) and SQLAlchemy then renews the whole pool.
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError("stale pooled connection") from exc


def _make_sqlite_transactional(engine: Engine) -> None:
    """Let SQLAlchemy own BEGIN; take the write lock up front, except for readers.

    pysqlite's own transaction handling defers BEGIN; a deferred transaction that read first can
    fail with 'database is locked' without waiting. BEGIN IMMEDIATE waits (busy timeout) instead,
    so every unit of work takes it, unless it is marked READ_ONLY: a reader in WAL mode needs no
    lock at all, and must not queue behind (or hold up) the callbacks. synchronous=FULL syncs the
    WAL on every commit, so a callback answered 200 survives a power cut, not only a crash.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


class Database:
    """An engine and its session factory, and the readers' engine and session factory."""

    def __init__(
        self,
        url: str,
        pool_timeout: float = 5.0,
        reader_timeout_ms: int = 0,
        limits: ConnectionLimits | None = None,
    ) -> None:
        self.url = url
        # The writers' engine (callbacks, pulls, commands) sends `$n` placeholders as written.
        self.engine = make_engine(url, pool_timeout, limits, raw_placeholders=True)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # For units of work that never write (GET requests): no write lock on SQLite, and on
        # PostgreSQL a statement timeout (0: the limits' one, if any), so no reader holds it long.
        readers = self.engine
        if self.engine.dialect.name == "postgresql":
            # A pool of its own whose connections start with these settings: a request pays no
            # SET/RESET round trip, a rolled-back read cannot undo them, and a writer's
            # connection never carries them. Disposing the engine disposes both pools.
            readers = make_engine(url, pool_timeout, limits, reader_settings(reader_timeout_ms))
            event.listen(self.engine, "engine_disposed", lambda _engine: readers.dispose())
        self.reader_engine = readers.execution_options(**{READ_ONLY: True})
        self.readers = sessionmaker(self.reader_engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for one unit of work (a sync pass, a CLI command); always closed."""
        session = self.sessions()
        try:
            yield session
        finally:
            session.close()

    def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        with self.reader_engine.connect() as connection:
            connection.execute(text("SELECT 1"))


def insert_on_conflict(session: Session, model: type[Any]) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT (PostgreSQL and SQLite alike)."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)
