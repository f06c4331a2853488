"""The one write path: a raw payload and its parsed records into the store.

Callbacks and pulls both come through `ingest`. It writes inside the caller's transaction; the
caller commits, and only after that commit may anyone be told the records are safe.

Every statement here is built once and cached compiled by SQLAlchemy, and the same SQL runs on
PostgreSQL and SQLite: a callback costs two statements (three when some records were repeats)
and no ORM unit of work. See bench/README.md for what that bought.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, TextClause, bindparam, insert, update
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Session

from app.jsms.records import ParsedBatch, Rejected, ReplyMessage, Report, Review, parse_payload
from app.store.models import DeliveryReport, RawEvent, Reply, ReviewResult, utcnow

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Rows per INSERT statement: well under SQLite's 32,766 bound parameters.
CHUNK = 500


@dataclass(frozen=True, slots=True)
class RawPayload:
    """What arrived, as it arrived: a callback's `data` or a pulled batch's body."""

    app_key: str
    source: str  # callback | pull
    type: str
    payload: str
    nonce: str | None = None
    callback_timestamp: int | None = None


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What ingesting one payload did."""

    raw_event_id: int
    stored: int
    duplicates: int
    quarantined: int

    def as_json(self) -> dict[str, int]:
        return {
            "stored": self.stored,
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
        }


def ingest(session: Session, raw: RawPayload, batch: ParsedBatch) -> IngestResult:
    """Store the raw payload and every record in it, skipping duplicates. The caller commits."""
    # Core statements only: run them on the transaction's connection, not through the ORM.
    connection = session.connection()
    now = utcnow()
    records = len(batch.records)
    # Written as if every record is new (the common case), corrected below when some were not:
    # one statement fewer per callback, and no one sees the row before the caller commits.
    raw_event_id: int = connection.execute(
        _RAW_EVENT,
        {
            "app_key": raw.app_key,
            "source": raw.source,
            "type": storable_text(raw.type[:64]),
            "payload": storable_text(raw.payload),
            "nonce": storable_text(raw.nonce[:64]) if raw.nonce else None,
            "callback_timestamp": raw.callback_timestamp,
            "received_at": now,
            "records": records + len(batch.rejected),
            "stored": records,
            "duplicates": 0,
            "quarantined": len(batch.rejected),
            "quarantine_reason": _reasons(batch.rejected),
        },
    ).scalar_one()
    context = _Context(connection, raw.app_key, raw.source, now, raw_event_id)
    stored = _store_records(context, batch)
    if stored != records:
        connection.execute(
            _RAW_EVENT_OUTCOME,
            {"event_id": raw_event_id, "stored": stored, "duplicates": records - stored},
        )
    return IngestResult(raw_event_id, stored, records - stored, len(batch.rejected))


_EVENTS: Table = RawEvent.__table__  # type: ignore[assignment]
_RAW_EVENT = insert(_EVENTS).returning(_EVENTS.c.id)
_RAW_EVENT_OUTCOME = (
    update(_EVENTS)
    .where(_EVENTS.c.id == bindparam("event_id"))
    .values(stored=bindparam("stored"), duplicates=bindparam("duplicates"))
)


def reprocess(session: Session, event: RawEvent) -> IngestResult:
    """Normalize a quarantined raw event again with today's parser; the caller commits.

    Records stored before are duplicates now, so running it twice changes nothing more.
    """
    try:
        batch = parse_payload(event.type, json.loads(event.payload))
    except (ValueError, RecursionError):
        return IngestResult(event.id, 0, 0, event.quarantined)
    context = _Context(session.connection(), event.app_key, event.source, utcnow(), event.id)
    stored = _store_records(context, batch)
    event.stored += stored
    event.duplicates = event.records - event.stored - len(batch.rejected)
    event.quarantined = len(batch.rejected)
    event.quarantine_reason = _reasons(batch.rejected)
    session.flush()
    return IngestResult(event.id, stored, len(batch.records) - stored, event.quarantined)


def _store_records(context: _Context, batch: ParsedBatch) -> int:
    return (
        store_reports(context, [r for r in batch.records if isinstance(r, Report)])
        + store_replies(context, [r for r in batch.records if isinstance(r, ReplyMessage)])
        + store_reviews(context, [r for r in batch.records if isinstance(r, Review)])
    )


@dataclass(frozen=True, slots=True)
class _Context:
    connection: Connection
    app_key: str
    source: str
    now: datetime
    raw_event_id: int

    def row(self, **values: Any) -> dict[str, Any]:
        return {
            "app_key": self.app_key,
            "source": self.source,
            "ingested_at": self.now,
            "raw_event_id": self.raw_event_id,
            **values,
        }


def store_reports(context: _Context, reports: Sequence[Report]) -> int:
    """Upsert reports; a later `received_at` replaces the stored status. Returns rows changed."""
    # One row per key: ON CONFLICT DO UPDATE may not touch a row twice in one statement.
    latest: dict[tuple[str, str], Report] = {}
    for report in reports:
        key = (report.msg_id, report.phone)
        if key not in latest or report.received_at > latest[key].received_at:
            latest[key] = report
    rows = [
        context.row(
            msg_id=r.msg_id,
            phone=r.phone,
            status=r.status,
            delivered=r.delivered,
            received_at=r.received_at,
        )
        for r in latest.values()
    ]
    return _write(context.connection, _REPORTS, rows)


def store_replies(context: _Context, replies: Sequence[ReplyMessage]) -> int:
    """Insert replies not seen before. Returns rows inserted."""
    rows = {}
    for r in replies:
        key = _dedup_key(context.app_key, r.phone, r.replied_at.isoformat(), r.content)
        rows[key] = context.row(
            phone=r.phone,
            content=r.content,
            replied_at=r.replied_at,
            extra=_json_or_none(r.extra),
            dedup_key=key,
        )
    return _write(context.connection, _REPLIES, list(rows.values()))


def store_reviews(context: _Context, reviews: Sequence[Review]) -> int:
    """Insert review results not seen before. Returns rows inserted."""
    rows = {}
    for r in reviews:
        key = _dedup_key(
            context.app_key, r.review_type, r.subject_id, str(r.status), r.refuse_reason or ""
        )
        rows[key] = context.row(
            review_type=r.review_type,
            subject_id=r.subject_id,
            status=r.status,
            refuse_reason=r.refuse_reason,
            extra=_json_or_none(r.extra),
            dedup_key=key,
        )
    return _write(context.connection, _REVIEWS, list(rows.values()))


@dataclass(frozen=True)
class _ConflictInsert:
    """`INSERT … VALUES (…), (…) ON CONFLICT … RETURNING id` for one table, as plain SQL.

    SQLAlchemy 2.0 never caches a compiled ON CONFLICT statement (its dialect Insert is not
    cacheable), so built with `on_conflict_do_update` it is compiled anew on every callback: a
    quarter of a worker's CPU. PostgreSQL and SQLite spell this clause the same way, so one
    textual statement per row count (typed binds, columns taken from the model) serves both,
    and SQLAlchemy compiles it once.
    """

    table: Table
    columns: tuple[str, ...]
    on_conflict: str

    def statement(self, rows: int) -> TextClause:
        return _conflict_insert_sql(self, rows)

    def parameters(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {f"{c}_{i}": row[c] for i, row in enumerate(rows) for c in self.columns}


@functools.lru_cache(maxsize=256)
def _conflict_insert_sql(insert_: _ConflictInsert, rows: int) -> TextClause:
    values = ", ".join(
        "(" + ", ".join(f":{c}_{i}" for c in insert_.columns) + ")" for i in range(rows)
    )
    sql = (
        f"INSERT INTO {insert_.table.name} ({', '.join(insert_.columns)}) VALUES {values} "
        f"{insert_.on_conflict} RETURNING id"
    )
    binds = [
        bindparam(f"{c}_{i}", type_=insert_.table.c[c].type)
        for i in range(rows)
        for c in insert_.columns
    ]
    return sql_text(sql).bindparams(*binds)


def _conflict_insert(model: type[Any], on_conflict: str) -> _ConflictInsert:
    table: Table = model.__table__
    columns = tuple(c.name for c in table.columns if c.name != "id")
    return _ConflictInsert(table, columns, on_conflict)


_REPORTS = _conflict_insert(
    DeliveryReport,
    "ON CONFLICT (app_key, msg_id, phone) DO UPDATE SET "
    + ", ".join(
        f"{c} = excluded.{c}"
        for c in ("status", "delivered", "received_at", "source", "ingested_at", "raw_event_id")
    )
    + " WHERE excluded.received_at > delivery_reports.received_at",
)
_REPLIES = _conflict_insert(Reply, "ON CONFLICT (dedup_key) DO NOTHING")
_REVIEWS = _conflict_insert(ReviewResult, "ON CONFLICT (dedup_key) DO NOTHING")


def _write(connection: Connection, insert_: _ConflictInsert, rows: list[dict[str, Any]]) -> int:
    """Run the conflict-aware INSERT over `rows`; how many rows it inserted or updated."""
    changed = 0
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        result = connection.execute(insert_.statement(len(chunk)), insert_.parameters(chunk))
        changed += len(result.all())
    return changed


def _dedup_key(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def _json_or_none(value: dict[str, Any]) -> str | None:
    if not value:
        return None
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: escape them instead
        text = json.dumps(value, sort_keys=True)
    return text


def storable_text(text: str) -> str:
    """Raw text as close to what arrived as a database can hold: NUL and lone surrogates become
    U+FFFD (PostgreSQL text cannot hold NUL; UTF-8 cannot hold a lone surrogate)."""
    return _UNSTORABLE.sub("\ufffd", text)


def _reasons(rejected: Sequence[Rejected]) -> str | None:
    return "\n".join(f"#{r.index}: {r.reason}" for r in rejected) or None
