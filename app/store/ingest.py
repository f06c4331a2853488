"""The one write path: a raw payload and its parsed records into the store.

Callbacks and pulls both come through `ingest_or_quarantine`. It writes inside the caller's
transaction; the caller commits, and only after that commit may anyone be told the records are
safe. Whatever a payload holds, its raw text is written: records the store refuses turn into
quarantined items of a raw event, never into a lost payload.

Every statement here is built once and cached compiled by SQLAlchemy (`upsert.py`), and the same
SQL runs on PostgreSQL and SQLite: a callback costs two statements inside a SAVEPOINT (three
when some records were repeats) and no ORM unit of work. See bench/README.md for what that
bought.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, bindparam, insert, update
from sqlalchemy.orm import Session

from app.errors import DATABASE_UNAVAILABLE
from app.jsms.pulled import decode_json
from app.jsms.records import (
    ParsedBatch,
    ReplyMessage,
    Report,
    Review,
    encode_extra,
    parse_payload,
)
from app.store.models import RawEvent, utcnow
from app.store.upsert import REPLIES, REPORTS, REVIEWS, write

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


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


def ingest_or_quarantine(session: Session, raw: RawPayload, batch: ParsedBatch) -> IngestResult:
    """Ingest the payload; if the store refuses a record's values, keep the payload raw with
    every item quarantined instead. Both ways in (callbacks and pulls) come through here.

    Only the database being unavailable escapes (the caller answers 503 or spools the batch):
    whatever else goes wrong, the raw payload is written in the caller's transaction.
    """
    try:
        with session.begin_nested():  # a SAVEPOINT: a refusal undoes only this payload's rows
            return ingest(session, raw, batch)
    except DATABASE_UNAVAILABLE:
        raise
    except Exception as exc:  # an exception for one record's values must not cost the payload
        reason = (
            f"{len(batch.records)} records could not be stored "
            f"({type(exc).__name__}): the payload is kept raw"
        )
        whole = ParsedBatch(
            rejected=batch.rejected,
            unread=batch.unread + len(batch.records),
            unread_reason="; ".join(filter(None, [reason, batch.unread_reason])),
        )
        return ingest(session, raw, whole)


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
            "records": batch.items,
            "stored": records,
            "duplicates": 0,
            "quarantined": batch.quarantined,
            "quarantine_reason": batch.reasons(),
        },
    ).scalar_one()
    context = _Context(connection, raw.app_key, raw.source, now, raw_event_id)
    stored = _store_records(context, batch)
    if stored != records:
        connection.execute(
            _RAW_EVENT_OUTCOME,
            {"event_id": raw_event_id, "stored": stored, "duplicates": records - stored},
        )
    return IngestResult(raw_event_id, stored, records - stored, batch.quarantined)


_EVENTS: Table = RawEvent.__table__  # type: ignore[assignment]
_RAW_EVENT = insert(_EVENTS).returning(_EVENTS.c.id)
_RAW_EVENT_OUTCOME = (
    update(_EVENTS)
    .where(_EVENTS.c.id == bindparam("event_id"))
    .values(stored=bindparam("stored"), duplicates=bindparam("duplicates"))
)


def reprocess(session: Session, event: RawEvent) -> IngestResult:
    """Read a quarantined raw event again with today's parser; the caller commits. Returns the
    records it newly stored (its duplicates and quarantined counts are the event's, now).

    Records stored before are duplicates now, so running it twice changes nothing more. Every
    item is read, however many (the callback bound protects web workers, not this command).
    """
    data, decode_error = decode_json(event.payload)
    if decode_error is not None:
        return IngestResult(event.id, 0, event.duplicates, event.quarantined)
    batch = parse_payload(event.type, data)
    context = _Context(session.connection(), event.app_key, event.source, utcnow(), event.id)
    try:
        with session.begin_nested():
            written = _store_records(context, batch)
    except DATABASE_UNAVAILABLE:
        raise
    except Exception:  # the store still refuses these values: the event stays as it was
        return IngestResult(event.id, 0, event.duplicates, event.quarantined)
    before, kept = event.stored, len(batch.records)
    # Its records stored before come back as duplicates (or, superseded since, as stored).
    event.stored = min(before + written, kept)
    event.records = batch.items
    event.duplicates = kept - event.stored
    event.quarantined = batch.quarantined
    event.quarantine_reason = batch.reasons()
    session.flush()
    return IngestResult(event.id, event.stored - before, event.duplicates, event.quarantined)


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
    """Upsert reports; the greater `Report.precedence` is kept. Returns the reports that were
    not identical repeats: new, replacing the row, or superseded by a row that ranks higher."""
    # One row per key: ON CONFLICT DO UPDATE may not touch a row twice in one statement.
    latest: dict[tuple[str, str], Report] = {}
    distinct: set[tuple[str, str, tuple[datetime, bool, int]]] = set()
    for report in reports:
        key = (report.msg_id, report.phone)
        distinct.add((*key, report.precedence))
        if key not in latest or report.precedence > latest[key].precedence:
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
    # The reports this batch itself outranked were not repeats either.
    return write(context.connection, REPORTS, rows) + len(distinct) - len(latest)


def store_replies(context: _Context, replies: Sequence[ReplyMessage]) -> int:
    """Insert replies not seen before. Returns rows inserted."""
    rows = {}
    for r in replies:
        key = _dedup_key(context.app_key, r.phone, r.replied_at.isoformat(), r.content)
        rows[key] = context.row(
            phone=r.phone,
            content=r.content,
            replied_at=r.replied_at,
            extra=encode_extra(r.extra),
            dedup_key=key,
        )
    return write(context.connection, REPLIES, list(rows.values()))


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
            extra=encode_extra(r.extra),
            dedup_key=key,
        )
    return write(context.connection, REVIEWS, list(rows.values()))


def _dedup_key(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def storable_text(text: str) -> str:
    """Raw text as close to what arrived as a database can hold: NUL and lone surrogates become
    U+FFFD (PostgreSQL text cannot hold NUL; UTF-8 cannot hold a lone surrogate)."""
    return _UNSTORABLE.sub("\ufffd", text)
