"""The one write path: a raw payload and its parsed records into the store.

Callbacks and pulls both come through `ingest`. It writes inside the caller's transaction; the
caller commits, and only after that commit may anyone be told the records are safe.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.db import insert_on_conflict
from app.jsms.records import ParsedBatch, Rejected, ReplyMessage, Report, Review, parse_payload
from app.models import DeliveryReport, RawEvent, Reply, ReviewResult, utcnow

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
    now = utcnow()
    event = RawEvent(
        app_key=raw.app_key,
        source=raw.source,
        type=storable_text(raw.type[:64]),
        payload=storable_text(raw.payload),
        nonce=storable_text(raw.nonce[:64]) if raw.nonce else None,
        callback_timestamp=raw.callback_timestamp,
        received_at=now,
        records=len(batch.records) + len(batch.rejected),
        quarantined=len(batch.rejected),
        quarantine_reason=_reasons(batch.rejected),
    )
    session.add(event)
    session.flush()
    stored = _store_records(_Context(session, raw.app_key, raw.source, now, event.id), batch)
    event.stored = stored
    event.duplicates = len(batch.records) - stored
    session.flush()
    return IngestResult(event.id, stored, event.duplicates, event.quarantined)


def reprocess(session: Session, event: RawEvent) -> IngestResult:
    """Normalize a quarantined raw event again with today's parser; the caller commits.

    Records stored before are duplicates now, so running it twice changes nothing more.
    """
    try:
        batch = parse_payload(event.type, json.loads(event.payload))
    except (ValueError, RecursionError):
        return IngestResult(event.id, 0, 0, event.quarantined)
    context = _Context(session, event.app_key, event.source, utcnow(), event.id)
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
    session: Session
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
    changed = 0
    for chunk in _chunks(rows):
        stmt = insert_on_conflict(context.session, DeliveryReport)
        stmt = stmt.on_conflict_do_update(
            index_elements=["app_key", "msg_id", "phone"],
            set_={
                name: stmt.excluded[name]
                for name in (
                    "status",
                    "delivered",
                    "received_at",
                    "source",
                    "ingested_at",
                    "raw_event_id",
                )
            },
            where=stmt.excluded.received_at > DeliveryReport.received_at,
        )
        # Rows as executemany parameters: one cached statement, batched by SQLAlchemy.
        changed += len(_execute_rows(context.session, stmt.returning(DeliveryReport.id), chunk))
    return changed


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
    return _insert_new(context.session, Reply, list(rows.values()))


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
    return _insert_new(context.session, ReviewResult, list(rows.values()))


def _insert_new(
    session: Session, model: type[Reply] | type[ReviewResult], rows: list[dict[str, Any]]
) -> int:
    inserted = 0
    for chunk in _chunks(rows):
        stmt = insert_on_conflict(session, model).on_conflict_do_nothing(
            index_elements=["dedup_key"]
        )
        inserted += len(_execute_rows(session, stmt.returning(model.id), chunk))
    return inserted


def _execute_rows(session: Session, stmt: Any, rows: list[dict[str, Any]]) -> list[Any]:
    """Run an INSERT … RETURNING for many rows at once; the rows it returned."""
    if not rows:
        return []
    return list(session.connection().execute(stmt, rows).all())


def _chunks(rows: list[dict[str, Any]]) -> Iterable[list[dict[str, Any]]]:
    for start in range(0, len(rows), CHUNK):
        yield rows[start : start + CHUNK]


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
