"""The one write path: a raw payload and its parsed records into the store.

Callbacks and pulls both come through `ingest_or_quarantine`. It writes inside the caller's
transaction; the caller commits, and only after that commit may anyone be told the records are
safe. Whatever a payload holds, its raw text is written: records the store refuses turn into
quarantined items of a raw event, never into a lost payload.

`ingest_many` stores a group of payloads at once (the web workers' group commit, `group.py`):
one multi-row statement for the raw events and one per table for the records, whoever carried
them, plus one to correct the counts of payloads that held repeats. The raw events' and the
records' statements are plain SQL made once per row count (`insert_events`, `upsert.py`) and
sent to the driver as they are, values through each column's bind processor; the same SQL runs
on PostgreSQL and SQLite but where noted. What a callback costs: bench/README.md, "Callback
ingest".
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Dialect, String, Table, bindparam, update
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine

from app.jsms.callback import Suspect
from app.jsms.pulled import decode_json
from app.jsms.records import ParsedBatch, parse_payload
from app.store.db import DATABASE_UNAVAILABLE
from app.store.models import RawEvent, utcnow
from app.store.upsert import CHUNK, Owner, bound_values, placeholders, store_records

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
    suspect: str | None = None  # signature_reused | signature_time: records wait for trust


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


def as_suspect(
    raw: RawPayload, batch: ParsedBatch, suspect: Suspect
) -> tuple[RawPayload, ParsedBatch]:
    """A correctly signed callback that is kept but not believed: its raw event marked
    `suspect`, every item quarantined unread (at least one, so it is listed with the
    quarantine) for the suspicion's reason. Its records reach the tables only by `jsms trust`."""
    whole = ParsedBatch.kept_whole(max(batch.items, 1), suspect.reason)
    return replace(raw, suspect=suspect.code), whole


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
    (result,) = ingest_many(session, [(raw, batch)])
    return result


def transaction_connection(session: Session | Connection) -> Connection:
    """The connection a unit of work's Core statements run on: a session's, or the one given."""
    return session if isinstance(session, Connection) else session.connection()


def ingest_many(
    session: Session | Connection, payloads: Sequence[tuple[RawPayload, ParsedBatch]]
) -> list[IngestResult]:
    """Store many payloads at once (a group of callbacks): all raw events in one statement, all
    records in one statement per table, each payload's outcome counted as if it came alone, in
    order: a record two payloads carry is stored by the first, a duplicate for the second. The
    caller commits."""
    if not payloads:
        return []
    # Core statements only: run them on the transaction's connection, not through the ORM.
    connection = transaction_connection(session)
    now = utcnow()
    # Written as if every record is new (the common case), corrected below when some were not:
    # one statement fewer, and no one sees the rows before the caller commits.
    event_ids = insert_events(connection, [_event_row(raw, batch, now) for raw, batch in payloads])
    owners = [
        Owner(raw.app_key, raw.source, now, event_id)
        for (raw, _), event_id in zip(payloads, event_ids, strict=True)
    ]
    batches = [batch for _, batch in payloads]
    stored = store_records(connection, owners, batches)
    corrections = [
        {"event_id": owner.raw_event_id, "stored": kept, "duplicates": len(batch.records) - kept}
        for owner, batch, kept in zip(owners, batches, stored, strict=True)
        if kept != len(batch.records)
    ]
    if corrections:
        connection.execute(_RAW_EVENT_OUTCOME, corrections)
    return [
        IngestResult(owner.raw_event_id, kept, len(batch.records) - kept, batch.quarantined)
        for owner, batch, kept in zip(owners, batches, stored, strict=True)
    ]


def _event_row(raw: RawPayload, batch: ParsedBatch, now: datetime) -> dict[str, Any]:
    return {
        "app_key": raw.app_key,
        "source": raw.source,
        "type": storable_text(raw.type[:64]),
        "payload": storable_text(raw.payload),
        "nonce": storable_text(raw.nonce[:64]) if raw.nonce else None,
        "callback_timestamp": raw.callback_timestamp,
        "received_at": now,
        "records": batch.items,
        "stored": len(batch.records),
        "duplicates": 0,
        "quarantined": batch.quarantined,
        "quarantine_reason": batch.reasons(),
        "suspect": raw.suspect,
    }


_EVENTS: Table = RawEvent.__table__  # type: ignore[assignment]
_EVENT_COLUMNS = tuple(c.name for c in _EVENTS.columns if c.name != "id")


def insert_events(connection: Connection, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert raw events; their ids, in the order of `rows`. PostgreSQL: one multi-row
    statement, its rows numbered and inserted in that order, so their ids (one sequence, handed
    out as the rows are inserted) sorted are the rows' ids in order; the way SQLAlchemy's
    `insertmanyvalues` does it, as plain SQL made once per group size (up to CHUNK rows a
    statement). SQLite, whose RETURNING promises no order, one statement a row."""
    dialect = connection.dialect
    if dialect.name != "postgresql":
        sql = _events_sql(1, dialect)
        return [
            connection.exec_driver_sql(sql, bound_values(_EVENTS, _EVENT_COLUMNS, [row], dialect))
            .scalar_one()
            for row in rows
        ]  # fmt: skip
    ids: list[int] = []
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        values = bound_values(_EVENTS, _EVENT_COLUMNS, chunk, dialect)
        inserted = connection.exec_driver_sql(_events_sql(len(chunk), dialect), values)
        ids += sorted(inserted.scalars())
    return ids


def _cast_type(type_: TypeEngine[Any]) -> TypeEngine[Any]:
    return String() if isinstance(type_, String) else type_


@functools.lru_cache(maxsize=128)
def _events_sql(rows: int, dialect: Dialect) -> str:
    columns = ", ".join(_EVENT_COLUMNS)
    if dialect.name != "postgresql":
        row = ", ".join(placeholders(dialect.paramstyle, len(_EVENT_COLUMNS)))
        return f"INSERT INTO raw_events ({columns}) VALUES ({row}) RETURNING id"
    # Cast as SQLAlchemy does, strings to VARCHAR without a length: a cast to VARCHAR(n) would
    # cut a longer value where the INSERT refuses it.
    casts = [f"::{_cast_type(_EVENTS.c[c].type).compile(dialect)}" for c in _EVENT_COLUMNS]
    marks = iter(placeholders(dialect.paramstyle, rows * len(casts)))
    values = ", ".join(
        "(" + ", ".join(next(marks) + cast for cast in casts) + f", {i})" for i in range(rows)
    )
    return (
        f"INSERT INTO raw_events ({columns}) SELECT {columns} "
        f"FROM (VALUES {values}) AS v({columns}, row_number) ORDER BY row_number RETURNING id"
    )


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
    if decode_error is not None or event.suspect:  # a suspect's records wait for `jsms trust`
        return IngestResult(event.id, 0, event.duplicates, event.quarantined)
    batch = parse_payload(event.type, data)
    owner = Owner(event.app_key, event.source, utcnow(), event.id)
    try:
        with session.begin_nested():
            (written,) = store_records(session.connection(), [owner], [batch])
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


def trust(session: Session, event: RawEvent) -> IngestResult:
    """Store the records of a suspect callback an operator has checked (`jsms trust`): it is no
    longer suspect, and its payload is read and stored as `reprocess` reads any quarantined
    event, by the statements every callback's records go through (`store_records`). The
    caller commits; raises ValueError for an event that is not suspect."""
    if event.suspect is None:
        raise ValueError(f"raw event {event.id} is not a suspect callback")
    event.suspect = None
    return reprocess(session, event)


def storable_text(text: str) -> str:
    """Raw text as close to what arrived as a database can hold: NUL and lone surrogates become
    U+FFFD (PostgreSQL text cannot hold NUL; UTF-8 cannot hold a lone surrogate)."""
    return _UNSTORABLE.sub("\ufffd", text)
