"""A keyset page on PostgreSQL, run by psycopg itself: the committed horizon, then the page
(`read_page`), or one read alone (`read_rows`: a page below a horizon already read, the opt-out
check).

The very statements `app/query/lists.py` builds, compiled by SQLAlchemy once per table and set
of filters, executed on the driver's connection under the caller's unit of work (the readers'
pooled connection in autocommit: its statement timeout and custom plans come from connect).
SQLAlchemy's execution costs a page ≈ 0.1 ms of CPU a statement above psycopg's own (building
the execution context and the result's metadata, a Row per row; a page's rows are plain
tuples, its items built positionally): bench/README.md, "Query API".
What SQLAlchemy would add is kept: its exceptions (the error handlers answer 503, a timeout as
`query_timeout`), a lost connection invalidated, no parameter in an error's text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

import psycopg
from psycopg.abc import Loader
from psycopg.pq import Format
from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

# An expanding parameter (`status IN (...)`, one placeholder per value, which SQLAlchemy
# renders at each execution) becomes one array parameter: the SQL stays the same text.
_EXPANDING = re.compile(r"IN \(__\[POSTCOMPILE_(\w+)\]\)")


# A `timestamptz` travels in binary as microseconds since 2000-01-01 UTC, whatever the session's
# zone: read with psycopg's (C) loader for a `timestamp`, it is the same instant as a naive UTC
# datetime. A page's times are read so (0.55 instead of 0.83 us a row of two), and orjson writes
# a naive datetime as UTC (`OPT_NAIVE_UTC`, app/query/api.py) in a third of an aware one's time.
_TIMESTAMPTZ = psycopg.postgres.types["timestamptz"].oid


def _timestamp_loader() -> type[Loader]:
    loader = psycopg.adapters.get_loader(psycopg.postgres.types["timestamp"].oid, Format.BINARY)
    if loader is None:
        raise RuntimeError("psycopg reads no binary timestamp")
    return loader


_AS_NAIVE_UTC = _timestamp_loader()


@dataclass(frozen=True, slots=True)
class DriverStatement:
    """A statement as psycopg runs it (`%(name)s` parameters), the values it holds (a literal
    such as `substr(payload, 1, 1000)`'s is a parameter too), and the conversions some of its
    parameters need first, by name: a type's bind processor, as SQLAlchemy would apply it; an
    expanding parameter's values into a list (psycopg sends a list as an array)."""

    sql: str
    constants: dict[str, Any]
    conversions: tuple[tuple[str, Callable[[Any], Any]], ...]

    def parameters(self, values: dict[str, Any]) -> dict[str, Any]:
        """`values`, and the values the statement itself holds, as SQLAlchemy would bind them."""
        converted = {**self.constants, **values}
        for name, convert in self.conversions:
            if converted.get(name) is not None:
                converted[name] = convert(converted[name])
        return converted


@cache
def driver_statement(dialect: Dialect, statement: Any) -> DriverStatement:
    """The statement compiled once for psycopg. Refuses one whose columns SQLAlchemy would
    convert (a type's result processor): psycopg's values are handed over as they are."""
    compiled = statement.compile(dialect=dialect)
    for column in statement.selected_columns:
        if column.type.dialect_impl(dialect).result_processor(dialect, None) is not None:
            raise TypeError(f"SQLAlchemy would convert the values of {column}")
    binds = compiled.binds.items()
    conversions = tuple(
        (name, convert) for name, bind in binds if (convert := _conversion(dialect, bind))
    )
    constants = {name: bind.value for name, bind in binds if not bind.required}
    sql = _EXPANDING.sub(r"= ANY(%(\1)s)", compiled.string)
    return DriverStatement(sql, constants, conversions)


def _conversion(dialect: Dialect, bind: Any) -> Callable[[Any], Any] | None:
    """What a parameter's value needs before psycopg sends it, if anything."""
    if bind.expanding:
        return list  # psycopg sends a list as an array (a tuple as a record)
    processor: Callable[[Any], Any] | None = bind.type.dialect_impl(dialect).bind_processor(dialect)
    return processor


def runs_on(connection: Connection) -> bool:
    """Whether psycopg itself can run a page on `connection`: PostgreSQL with psycopg's own
    `%(name)s` placeholders (the readers' engine). The writers' engine sends `$n` placeholders
    as written (`db.make_engine`), so a page read on one of its connections (a command, a test)
    takes SQLAlchemy's execution instead."""
    dialect = connection.dialect
    return dialect.name == "postgresql" and dialect.paramstyle == "pyformat"


def read_page(
    connection: Connection, horizon: Any, page: Any, values: dict[str, Any]
) -> tuple[int, list[Any]]:
    """The committed horizon (`horizon`, a statement), then the rows of the page (`page`, with
    `values`, but `horizon`) up to it: two statements in autocommit, so the page's snapshot is
    taken after the horizon's lock was granted, and released."""
    dialect = connection.dialect
    horizon_statement, page_statement = (driver_statement(dialect, s) for s in (horizon, page))
    with _reading(connection, page_statement.sql) as cursor:
        row = cursor.execute(horizon_statement.sql).fetchone()
        cut = int(row[0] or 0) if row else 0
        parameters = page_statement.parameters({**values, "horizon": cut})
        rows = cursor.execute(page_statement.sql, parameters).fetchall()
    return cut, rows


def read_rows(connection: Connection, statement: Any, values: dict[str, Any]) -> list[Any]:
    """The rows of one read (a page below a known horizon, the opt-out check's primary-key
    read), as a page's are read."""
    compiled = driver_statement(connection.dialect, statement)
    with _reading(connection, compiled.sql) as cursor:
        return cursor.execute(compiled.sql, compiled.parameters(values)).fetchall()


@contextmanager
def _reading(connection: Connection, sql: str) -> Iterator[psycopg.Cursor[Any]]:
    """A cursor on the driver's connection under `connection`: rows as tuples, times as naive
    UTC datetimes, psycopg's errors raised as SQLAlchemy's."""
    driver: psycopg.Connection[Any] = connection.connection.driver_connection  # type: ignore[assignment]
    # binary: psycopg decodes a page's times and numbers from their binary form, cheaper.
    with _as_sqlalchemy_errors(connection, sql), driver.cursor(binary=True) as cursor:
        cursor.adapters.register_loader(_TIMESTAMPTZ, _AS_NAIVE_UTC)
        yield cursor


@contextmanager
def _as_sqlalchemy_errors(connection: Connection, statement: str) -> Iterator[None]:
    """psycopg's errors raised as SQLAlchemy raises them, the connection invalidated (the pool
    replaces it) when the error says it is lost."""
    try:
        yield
    except psycopg.Error as exc:
        dbapi_connection = connection.connection.dbapi_connection
        lost = connection.dialect.is_disconnect(exc, dbapi_connection, None)  # type: ignore[arg-type]
        if lost:
            connection.invalidate(exc)
        raise DBAPIError.instance(
            statement,
            None,
            exc,
            psycopg.Error,
            hide_parameters=True,
            connection_invalidated=lost,
            dialect=connection.dialect,
        ) from exc
