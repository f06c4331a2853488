"""Keyset walks over reports, replies and quarantined raw events, ordered by `id`, never by
OFFSET.

A walk only ever returns ids at or below a *committed horizon*: an id below which no insert is
still in flight. On PostgreSQL, sequence values can commit out of order (a transaction holding
id 99 may commit after one holding id 100 is visible), so the horizon is read under a brief
SHARE lock on the table (`committed_horizon()`, created by migration 0002), which waits for
in-flight writers and makes every id up to `max(id)` final. On SQLite writers are serialized
and ids commit in order, so `max(id)` in the reading transaction is the horizon. Hence a cursor
never passes a record that could still appear.

This module builds the statements and runs them on the connection it is given; the caller owns
the unit of work (which connection, which transaction, when it ends): see `app/query/api.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, func, literal_column, select

from app.query.params import QuarantineFilter, ReplyFilter, ReportFilter
from app.store.models import DeliveryReport, RawEvent, Reply

# Rows per query when streaming a whole export.
STREAM_CHUNK = 1000

ListModel = type[DeliveryReport] | type[Reply] | type[RawEvent]
# A quarantined event's payload may be 1 MiB and its reason long: items carry their start.
PAYLOAD_EXCERPT = 1000
REASON_EXCERPT = 2000

REPORT_COLUMNS = (
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
REPLY_COLUMNS = (
    Reply.id,
    Reply.app_key,
    Reply.phone,
    Reply.content,
    Reply.replied_at,
    Reply.source,
    Reply.ingested_at,
)


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


@dataclass(frozen=True, slots=True)
class Walk:
    """One keyset walk: which columns of which table, narrowed by which conditions."""

    model: ListModel
    columns: Sequence[Any]
    conditions: Sequence[ColumnElement[bool]]


@dataclass(frozen=True, slots=True)
class Page:
    """A page of rows, whether more follow, and the horizon the page was cut at."""

    rows: list[Row[Any]]
    has_more: bool
    horizon: int


def report_walk(report_filter: ReportFilter) -> Walk:
    """The walk over delivery reports matching the filter."""
    f, m = report_filter, DeliveryReport
    conditions: list[ColumnElement[bool]] = []
    if f.app_key is not None:
        conditions.append(m.app_key == f.app_key)
    if f.msg_id is not None:
        conditions.append(m.msg_id == f.msg_id)
    if f.phone is not None:
        conditions.append(m.phone == f.phone)
    if f.statuses is not None:
        conditions.append(m.status.in_(f.statuses))
    if f.delivered is not None:
        # `= false`, not `IS false`: only the equality can use an index on `delivered`.
        conditions.append(m.delivered == f.delivered)
    if f.source is not None:
        conditions.append(m.source == f.source)
    if f.since is not None:
        conditions.append(m.received_at >= f.since)
    if f.until is not None:
        conditions.append(m.received_at < f.until)
    return Walk(m, REPORT_COLUMNS, conditions)


def reply_walk(reply_filter: ReplyFilter) -> Walk:
    """The walk over replies matching the filter (`since`/`until` on `replied_at`)."""
    f, m = reply_filter, Reply
    conditions: list[ColumnElement[bool]] = []
    if f.app_key is not None:
        conditions.append(m.app_key == f.app_key)
    if f.phone is not None:
        conditions.append(m.phone == f.phone)
    if f.since is not None:
        conditions.append(m.replied_at >= f.since)
    if f.until is not None:
        conditions.append(m.replied_at < f.until)
    return Walk(m, REPLY_COLUMNS, conditions)


def quarantine_walk(quarantine_filter: QuarantineFilter) -> Walk:
    """The walk over quarantined raw events matching the filter (`since`/`until` on
    received_at); `quarantined > 0` reads the partial index over the quarantined few."""
    f, m = quarantine_filter, RawEvent
    conditions: list[ColumnElement[bool]] = [m.quarantined > 0]
    if f.app_key is not None:
        conditions.append(m.app_key == f.app_key)
    if f.reason == "records":
        conditions.append(m.suspect.is_(None))
    elif f.reason is not None:
        conditions.append(m.suspect == f.reason)
    if f.since is not None:
        conditions.append(m.received_at >= f.since)
    if f.until is not None:
        conditions.append(m.received_at < f.until)
    return Walk(m, QUARANTINE_COLUMNS, conditions)


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


def page_statement(walk: Walk, after: int, horizon: int, limit: int) -> Any:
    """`WHERE <filters> AND id > after AND id <= horizon ORDER BY id LIMIT limit`."""
    return (
        select(*walk.columns)
        .where(*walk.conditions, walk.model.id > after, walk.model.id <= horizon)
        .order_by(walk.model.id)
        .limit(limit)
    )


def fetch_page(connection: Connection, walk: Walk, after: int, limit: int) -> Page:
    """Up to `limit` rows after the cursor, below the committed horizon, read on `connection`.

    Every id up to the horizon is visible to the page's query when that query gets a snapshot
    after the horizon's lock was granted: the caller reads on PostgreSQL in autocommit (READ
    COMMITTED, a snapshot per statement), on SQLite in one transaction (ids commit in order).
    """
    horizon = read_horizon(connection, walk.model)
    # Core execution: plain rows, no ORM loading machinery.
    rows = list(connection.execute(page_statement(walk, after, horizon, limit + 1)))
    return Page(rows[:limit], len(rows) > limit, horizon)


def fetch_chunk(connection: Connection, walk: Walk, after: int, horizon: int) -> list[Row[Any]]:
    """The next STREAM_CHUNK matching rows of an export after `after`, up to its horizon; fewer
    means the export is complete, else the next chunk starts after the last row's id."""
    return list(connection.execute(page_statement(walk, after, horizon, STREAM_CHUNK)))
