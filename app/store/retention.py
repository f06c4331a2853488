"""Retention: delete what is older than the configured age, in small batches.

Raw events and normalized records have separate ages. Quarantined raw events are never
deleted: they hold records nobody has been able to read yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.config import Settings
from app.store.models import (
    Base,
    CallbackSignature,
    DeliveryReport,
    RawEvent,
    Reply,
    ReviewResult,
    SignatureReuse,
)

BATCH = 1000


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Ages in days; 0 keeps forever."""

    raw_event_days: int
    record_days: int


def retention_policy(settings: Settings) -> RetentionPolicy:
    """The configured ages."""
    return RetentionPolicy(settings.raw_event_retention_days, settings.record_retention_days)


def purge(
    session: Session, policy: RetentionPolicy, now: datetime, max_batches: int = 100
) -> dict[str, int]:
    """Delete expired rows, one transaction per BATCH rows so no long lock is held.
    Returns the rows deleted per table (a later run continues where this one stopped)."""
    deleted: dict[str, int] = {}
    if policy.raw_event_days:
        cutoff = now - timedelta(days=policy.raw_event_days)
        deleted["raw_events"] = _purge(
            session, RawEvent, RawEvent.received_at, cutoff, max_batches, RawEvent.quarantined == 0
        )
        # The replay memory covers this age: older signatures are suspect (`signature_time`),
        # kept quarantined whether remembered or not. A triple goes once both its timestamp and
        # its first receipt are past the age, so an old captured signature is not forgotten
        # (its 16 payloads counted afresh) while it is still being replayed.
        for memory in (CallbackSignature, SignatureReuse):
            deleted[memory.__tablename__] = _purge(
                session, memory, memory.callback_timestamp, int(cutoff.timestamp() * 1000),
                max_batches, memory.received_at < cutoff,
            )  # fmt: skip
    if policy.record_days:
        cutoff = now - timedelta(days=policy.record_days)
        for model, column in (
            (DeliveryReport, DeliveryReport.received_at),
            (Reply, Reply.replied_at),
            (ReviewResult, ReviewResult.ingested_at),
        ):
            deleted[model.__tablename__] = _purge(session, model, column, cutoff, max_batches)
    return deleted


def _purge(
    session: Session,
    model: type[Base],
    column: InstrumentedAttribute[Any],
    cutoff: datetime | int,
    max_batches: int,
    *conditions: ColumnElement[bool],
) -> int:
    total = 0
    identity = model.id  # type: ignore[attr-defined]
    for _ in range(max_batches):
        with session.begin():  # one transaction per batch: no long lock on the table
            ids = session.scalars(
                select(identity).where(column < cutoff, *conditions).order_by(identity).limit(BATCH)
            ).all()
            if ids:
                session.execute(delete(model).where(identity.in_(ids)))
        if not ids:
            break
        total += len(ids)
    return total
