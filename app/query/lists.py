"""Keyset walks over reports, replies and quarantined raw events, ordered by `id`, never by
OFFSET.

A walk only ever returns ids at or below a *committed horizon*: an id below which no insert is
still in flight. On PostgreSQL, sequence values can commit out of order (a transaction holding
id 99 may commit after one holding id 100 is visible), so the horizon is read under a brief
SHARE lock on the table (`committed_horizon()`, created by migration 0002), which waits for
in-flight writers and makes every id up to `max(id)` final. On SQLite writers are serialized
and ids commit in order, so `max(id)` in the reading transaction is the horizon. Hence a cursor
never passes a record that could still appear.

This module builds the statements and runs them on the connection it is given (a page on
PostgreSQL through psycopg itself, `app/query/pg_pages.py`); the caller owns the unit of work
(which connection, which transaction, when it ends): see `app/query/api.py`.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Row,
    bindparam,
    func,
    literal_column,
    select,
)
from sqlalchemy.orm import aliased

from app.query import pg_pages
from app.query.params import QuarantineFilter, ReplyFilter, ReportFilter
from app.store.models import (
    AppBalance,
    DeliveryReport,
    OptOutChange,
    RawEvent,
    Reply,
    ReviewResult,
)

# Rows per query when streaming a whole export.
STREAM_CHUNK = 1000

ListModel = (
    type[DeliveryReport]
    | type[Reply]
    | type[ReviewResult]
    | type[AppBalance]
    | type[OptOutChange]
    | type[RawEvent]
)
# A quarantined event's payload may be 1 MiB and its reason long: items carry their start.
PAYLOAD_EXCERPT = 1000
REASON_EXCERPT = 2000

# A report's columns in the order of its items (app/query/items.py) but `extra`, which comes last:
# every one of them is held by the partial index on undelivered reports (FAILURE_INCLUDE).
REPORT_COLUMNS_BUT_EXTRA = (
    DeliveryReport.id,
    DeliveryReport.app_key,
    DeliveryReport.msg_id,
    DeliveryReport.phone,
    DeliveryReport.status,
    DeliveryReport.delivered,
    DeliveryReport.received_at,
    DeliveryReport.source,
    DeliveryReport.ingested_at,
)
REPORT_COLUMNS = (*REPORT_COLUMNS_BUT_EXTRA, DeliveryReport.extra)
REPLY_COLUMNS = (
    Reply.id,
    Reply.app_key,
    Reply.phone,
    Reply.content,
    Reply.replied_at,
    Reply.source,
    Reply.ingested_at,
    Reply.extra,
)


# Each filter a walk can have: its name (the filter's field, and the bound parameter's) and the
# condition it adds, on the parameter, not on a value. So every walk with the same filters set
# runs the very same statement object, built once: SQLAlchemy then reuses its compiled form
# without building an expression, deriving a cache key or adapting result columns per request
# (≈ 0.45 ms of CPU a query, measured: bench/README.md, "Query API").
REPORT_CONDITIONS: dict[str, Callable[[], ColumnElement[bool]]] = {
    "app_key": lambda: DeliveryReport.app_key == bindparam("app_key"),
    "msg_id": lambda: DeliveryReport.msg_id == bindparam("msg_id"),
    "phone": lambda: DeliveryReport.phone == bindparam("phone"),
    "statuses": lambda: DeliveryReport.status.in_(bindparam("statuses", expanding=True)),
    # `= false`, not `IS false`: only the equality can use an index on `delivered`.
    "delivered": lambda: DeliveryReport.delivered == bindparam("delivered"),
    "source": lambda: DeliveryReport.source == bindparam("source"),
    "since": lambda: DeliveryReport.received_at >= bindparam("since"),
    "until": lambda: DeliveryReport.received_at < bindparam("until"),
}
REPLY_CONDITIONS: dict[str, Callable[[], ColumnElement[bool]]] = {
    "app_key": lambda: Reply.app_key == bindparam("app_key"),
    "phone": lambda: Reply.phone == bindparam("phone"),
    "since": lambda: Reply.replied_at >= bindparam("since"),
    "until": lambda: Reply.replied_at < bindparam("until"),
}
Conditions = dict[str, Callable[[], ColumnElement[bool]]]
_CONDITIONS: dict[ListModel, Conditions] = {
    DeliveryReport: REPORT_CONDITIONS,
    Reply: REPLY_CONDITIONS,
}
_COLUMNS: dict[ListModel, Sequence[Any]] = {DeliveryReport: REPORT_COLUMNS, Reply: REPLY_COLUMNS}
# Conditions every walk of a table has, whatever its filters (none for reports and replies).
_ALWAYS: dict[ListModel, Sequence[Callable[[], ColumnElement[bool]]]] = {}


def register(
    model: ListModel,
    columns: Sequence[Any],
    conditions: Conditions,
    always: Sequence[Callable[[], ColumnElement[bool]]] = (),
) -> None:
    """Make another table walkable (reviews, balance reads, opt-outs): the columns its pages
    read, the condition each filter adds (on a bound parameter of the filter's name), and the
    conditions every walk of it has. `id` comes first: a page's rows are read positionally."""
    if columns[0] is not model.id:
        raise ValueError(f"a walk of {model.__tablename__} must select its id first")
    _COLUMNS[model], _CONDITIONS[model], _ALWAYS[model] = columns, conditions, always


def walk_of(model: ListModel, values: dict[str, Any]) -> Walk:
    """The walk over a registered table narrowed to `values` (a None value is no filter)."""
    given = {name: value for name, value in values.items() if value is not None}
    return Walk(model, tuple(name for name in _CONDITIONS[model] if name in given), given)


QUARANTINE_COLUMNS = (
    RawEvent.id,
    RawEvent.app_key,
    RawEvent.source,
    RawEvent.type,
    RawEvent.received_at,
    RawEvent.suspect,
    func.substr(RawEvent.quarantine_reason, 1, REASON_EXCERPT).label("reason"),
    RawEvent.records,
    RawEvent.quarantined,
    func.substr(RawEvent.payload, 1, PAYLOAD_EXCERPT).label("payload_excerpt"),
    func.length(RawEvent.payload).label("payload_length"),
)
# Each filter's condition, on a parameter of its name. A quarantined event's reason is its
# suspicion (`signature_reused`, `signature_time`), or `records` for records that could not be
# stored.
_COLUMNS[RawEvent] = QUARANTINE_COLUMNS
_CONDITIONS[RawEvent] = {
    "app_key": lambda: RawEvent.app_key == bindparam("app_key"),
    "reason": lambda: func.coalesce(RawEvent.suspect, "records") == bindparam("reason"),
    "since": lambda: RawEvent.received_at >= bindparam("since"),
    "until": lambda: RawEvent.received_at < bindparam("until"),
}
_ALWAYS[RawEvent] = [lambda: RawEvent.quarantined > 0]


@dataclass(frozen=True, slots=True)
class Walk:
    """One keyset walk: which table, narrowed by which filters (names, in their table's order)
    to which values."""

    model: ListModel
    filters: tuple[str, ...]
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Page:
    """A page of rows, whether more follow, and the horizon the page was cut at."""

    rows: list[Any]  # each a sequence of the walk's columns in their order (a tuple, a Row)
    has_more: bool
    horizon: int

    @classmethod
    def cut(cls, rows: list[Any], limit: int, horizon: int) -> Page:
        """The page of `rows` read as `limit + 1`: the first `limit`, and whether one more came."""
        return cls(rows[:limit], len(rows) > limit, horizon)

    @property
    def last_id(self) -> int | None:
        """The id of the page's last row (every walk selects `id` first), None if empty."""
        return int(self.rows[-1][0]) if self.rows else None


def report_walk(report_filter: ReportFilter) -> Walk:
    """The walk over delivery reports matching the filter."""
    return _walk(DeliveryReport, report_filter)


def reply_walk(reply_filter: ReplyFilter) -> Walk:
    """The walk over replies matching the filter (`since`/`until` on `replied_at`)."""
    return _walk(Reply, reply_filter)


def _walk(model: ListModel, given: ReportFilter | ReplyFilter) -> Walk:
    return walk_of(model, {name: getattr(given, name) for name in _CONDITIONS[model]})


def quarantine_walk(quarantine_filter: QuarantineFilter) -> Walk:
    """The walk over quarantined raw events matching the filter (`since`/`until` on
    received_at); `quarantined > 0` reads the partial index over the quarantined few."""
    f = quarantine_filter
    values = {"app_key": f.app_key, "reason": f.reason, "since": f.since, "until": f.until}
    return walk_of(RawEvent, values)


@cache
def horizon_statement(dialect: str, model: ListModel) -> Any:
    """The statement that reads the table's committed horizon on the given backend."""
    if dialect != "postgresql":
        return select(func.max(model.id))
    # committed_horizon() is created by migration 0002: LOCK ... IN SHARE MODE, then max(id).
    return select(func.committed_horizon(literal_column(f"'{model.__tablename__}'")))


def read_horizon(connection: Connection, model: ListModel) -> int:
    """The highest id below which every insert into the table has committed or rolled back.

    On PostgreSQL the brief SHARE lock lasts as long as the caller's transaction: read it in
    autocommit, or end the transaction before reading up to the horizon.
    """
    return int(connection.scalar(horizon_statement(connection.dialect.name, model)) or 0)


# A walk of reports filtered on `delivered` reads `extra` late: by primary key, for the rows
# the page returns only, after the LIMIT (PostgreSQL evaluates a sub-select in the select list
# above the Limit). `extra` is unbounded text, which no index row can hold, so reading it in
# the scan would take the heap for every candidate row: the planner then walks the time index
# of all apps (1.3 ms for an app-day's failures, 300,000 reports) rather than the partial index
# on undelivered reports, which covers every other column (0.35 ms, bench/README.md).
LATE_EXTRA_FILTERS = frozenset({"delivered"})


def _late_extra() -> Any:
    """`(SELECT extra FROM delivery_reports AS late WHERE late.id = delivery_reports.id)`."""
    late = aliased(DeliveryReport, name="late")
    by_id = select(late.extra).where(late.id == DeliveryReport.id)
    return by_id.scalar_subquery().label("extra")


def _columns(model: ListModel, filters: tuple[str, ...]) -> Sequence[Any]:
    """What a page of the walk selects: the table's columns, `extra` late where that keeps the
    scan index-only (LATE_EXTRA_FILTERS)."""
    if model is DeliveryReport and LATE_EXTRA_FILTERS.intersection(filters):
        return (*REPORT_COLUMNS_BUT_EXTRA, _late_extra())
    return _COLUMNS[model]


@cache
def page_statement(model: ListModel, filters: tuple[str, ...]) -> Any:
    """`WHERE <filters> AND id > :after AND id <= :horizon ORDER BY id LIMIT :limit`, built once
    per table and set of filters; `page_parameters` gives its parameters."""
    return (
        select(*_columns(model, filters))
        .where(
            *(condition() for condition in _ALWAYS.get(model, ())),
            *(_CONDITIONS[model][name]() for name in filters),
            model.id > bindparam("after"),
            model.id <= bindparam("horizon"),
        )
        .order_by(model.id)
        .limit(bindparam("limit", type_=Integer))
    )


def page_parameters(walk: Walk, after: int, horizon: int, limit: int) -> dict[str, Any]:
    """The walk's values, and where its page starts, ends and how many rows it reads."""
    return {**walk.values, "after": after, "horizon": horizon, "limit": limit}


def _rows(
    connection: Connection, walk: Walk, after: int, horizon: int, limit: int
) -> list[Row[Any]]:
    statement = page_statement(walk.model, walk.filters)
    # all(): one fetchall from the driver; iterating the result fetches row by row (a third of
    # a 100-row page's CPU in SQLAlchemy and psycopg).
    return list(connection.execute(statement, page_parameters(walk, after, horizon, limit)).all())


def fetch_page(connection: Connection, walk: Walk, after: int, limit: int) -> Page:
    """Up to `limit` rows after the cursor, below the committed horizon, read on `connection`.

    Every id up to the horizon is visible to the page's query when that query gets a snapshot
    after the horizon's lock was granted: the caller reads on PostgreSQL in autocommit (READ
    COMMITTED, a snapshot per statement), on SQLite in one transaction (ids commit in order).
    """
    if pg_pages.runs_on(connection):  # the same statements, run by psycopg itself
        return _pg_page(connection, walk, after, limit)
    horizon = read_horizon(connection, walk.model)
    rows = _rows(connection, walk, after, horizon, limit + 1)
    return Page.cut(rows, limit, horizon)


# No upper bound: `id <= :horizon` with the largest id a BIGINT holds.
_UNBOUNDED = 2**63 - 1


def _pg_page(connection: Connection, walk: Walk, after: int, limit: int) -> Page:
    """A page on PostgreSQL, in one round trip where a horizon already read allows it.

    Every id up to a horizon once read had committed or rolled back by then, so any later
    snapshot sees all of them: a page read without an upper bound whose rows all lie at or
    below such a horizon is exactly the page cut there (and its next rows, if any, too), and
    needs no horizon of its own. A page that reaches above it, or one asked from above it
    (a walk at the head), reads a new horizon first, then the page, as before.
    """
    statement = page_statement(walk.model, walk.filters)
    values = {**walk.values, "after": after, "limit": limit + 1}
    known = _known_horizons(connection).get(walk.model.__tablename__, 0)
    if after < known:
        rows = pg_pages.read_rows(connection, statement, {**values, "horizon": _UNBOUNDED})
        if not rows or rows[-1][0] <= known:
            return Page.cut(rows, limit, known)
    horizon_sql = horizon_statement("postgresql", walk.model)
    horizon, rows = pg_pages.read_page(connection, horizon_sql, statement, values)
    _remember_horizon(connection, walk.model, horizon)
    return Page.cut(rows, limit, horizon)


# The highest committed horizon read of each table, per pool of connections (one database).
# Valid as long as the table's ids only grow: a database restored under a running service
# (its sequences set back) needs the service restarted (README, "Pagination").
_HORIZONS: weakref.WeakKeyDictionary[Any, dict[str, int]] = weakref.WeakKeyDictionary()
_HORIZONS_LOCK = threading.Lock()


def _known_horizons(connection: Connection) -> dict[str, int]:
    return _HORIZONS.get(connection.engine.pool) or {}


def _remember_horizon(connection: Connection, model: ListModel, horizon: int) -> None:
    """Keep the highest horizon read of the table (threads read pages side by side)."""
    with _HORIZONS_LOCK:
        known = _HORIZONS.setdefault(connection.engine.pool, {})
        table = model.__tablename__
        known[table] = max(known.get(table, 0), horizon)


def fetch_chunk(connection: Connection, walk: Walk, after: int, horizon: int) -> list[Row[Any]]:
    """The next STREAM_CHUNK matching rows of an export after `after`, up to its horizon; fewer
    means the export is complete, else the next chunk starts after the last row's id."""
    return _rows(connection, walk, after, horizon, STREAM_CHUNK)
