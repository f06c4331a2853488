"""What the alerts and the receipts-at-risk countdown read besides records and sync state:
callbacks refused in a way JSMS retries, and the clock's heartbeat. Helpers here write inside
the caller's transaction; they never commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.store.db import insert_on_conflict
from app.store.models import ClockHeartbeat, RefusedCallback

# A heartbeat older than this belongs to a clock that has gone; its row is dropped.
HEARTBEAT_KEPT = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Refusals:
    """Refused callbacks of one app, kind and reason since some moment."""

    app_key: str
    kind: str
    reason: str
    refusals: int
    oldest_at: datetime
    newest_at: datetime


def count_refusal(session: Session, app_key: str, kind: str, reason: str, at: datetime) -> None:
    """Add one refusal to its app, kind, reason and hour."""
    hour = at.replace(minute=0, second=0, microsecond=0)
    insert = insert_on_conflict(session, RefusedCallback).values(
        app_key=app_key, kind=kind, reason=reason, hour=hour, refusals=1, first_at=at, last_at=at
    )
    session.execute(
        insert.on_conflict_do_update(
            index_elements=["app_key", "kind", "reason", "hour"],
            set_={
                "refusals": RefusedCallback.refusals + 1,
                "last_at": insert.excluded.last_at,
            },
        )
    )


def refusals_since(session: Session, since: datetime) -> list[Refusals]:
    """Per app, kind and reason: refusals in hours that reach past `since`, and the oldest one
    known to be after `since` (within an hour that straddles it, only its last is known)."""
    rows = session.execute(
        select(
            RefusedCallback.app_key,
            RefusedCallback.kind,
            RefusedCallback.reason,
            RefusedCallback.refusals,
            RefusedCallback.first_at,
            RefusedCallback.last_at,
        ).where(RefusedCallback.last_at >= since)
    ).all()
    grouped: dict[tuple[str, str, str], Refusals] = {}
    for app_key, kind, reason, count, first_at, last_at in rows:
        oldest = first_at if first_at >= since else last_at
        key = (app_key, kind, reason)
        seen = grouped.get(key)
        if seen:
            count += seen.refusals
            oldest, last_at = min(oldest, seen.oldest_at), max(last_at, seen.newest_at)
        grouped[key] = Refusals(app_key, kind, reason, count, oldest, last_at)
    return sorted(grouped.values(), key=lambda r: (r.app_key, r.kind, r.reason))


def refusal_totals(session: Session) -> list[tuple[str, str, str, int]]:
    """Every refusal ever counted, per app, kind and reason (a counter for `/metrics`)."""
    rows = session.execute(
        select(
            RefusedCallback.app_key,
            RefusedCallback.kind,
            RefusedCallback.reason,
            func.sum(RefusedCallback.refusals),
        ).group_by(RefusedCallback.app_key, RefusedCallback.kind, RefusedCallback.reason)
    ).all()
    return [(a, k, r, int(n)) for a, k, r, n in rows]


def beat(session: Session, holder: str, at: datetime) -> None:
    """Record that the clock `holder` is alive now, and forget clocks long gone."""
    insert = insert_on_conflict(session, ClockHeartbeat).values(holder=holder, beat_at=at)
    session.execute(
        insert.on_conflict_do_update(
            index_elements=["holder"], set_={"beat_at": insert.excluded.beat_at}
        )
    )
    session.execute(delete(ClockHeartbeat).where(ClockHeartbeat.beat_at < at - HEARTBEAT_KEPT))


def last_heartbeat(session: Session) -> datetime | None:
    """When any clock last showed it was alive."""
    return session.scalar(select(func.max(ClockHeartbeat.beat_at)))
