"""Delivery statistics per local hour or day of a time zone, the same way on either backend.

The database counts reports per UTC slot (an hour; a quarter hour or finer only for a zone whose
offset is not whole hours) and status; Python folds the slots into the zone's local buckets with
`zoneinfo`. A slot is never split: if one straddles a local bucket's boundary, the counts are
asked for again with finer slots. So SQLite, which has no tz database, gives exactly what
PostgreSQL gives, and a 23- or 25-hour DST day is one bucket.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, DateTime, Integer, Select, func, literal_column, select
from sqlalchemy.orm import Session

from app.jsms.codes import DELIVERED
from app.query.params import StatsQuery
from app.store.models import DeliveryReport
from app.timezones import bucket_start

# Slot lengths in seconds, coarsest first. Every offset in use since 2000 is a multiple of 15 min.
SLOTS = (3600, 900, 60, 1)
_EPSILON = timedelta(microseconds=1)

SlotCounts = dict[datetime, Counter[int]]


def slot_start(dialect: str, slot: int) -> ColumnElement[Any]:
    """The start of the UTC slot of `slot` seconds that `received_at` falls in."""
    column = DeliveryReport.received_at
    # Constants, not bound parameters: the same expression must appear in SELECT and GROUP BY.
    if dialect == "postgresql":
        origin: ColumnElement[Any] = literal_column("TIMESTAMPTZ '2000-01-01 00:00:00+00'")
        width: ColumnElement[Any] = literal_column(f"INTERVAL '{slot} seconds'")
        return func.date_bin(width, column, origin, type_=DateTime(timezone=True))
    # SQLite stores naive UTC text: whole epoch seconds, rounded down to the slot.
    seconds = func.cast(func.strftime(literal_column("'%s'"), column), Integer)
    return (seconds / literal_column(str(slot)) * literal_column(str(slot))).label(None)


def stats_statement(dialect: str, query: StatsQuery, slot: int) -> Select[tuple[Any, int, int]]:
    """`SELECT slot, status, count(*) … GROUP BY slot, status` for the query."""
    start = slot_start(dialect, slot)
    conditions: list[ColumnElement[bool]] = []
    if query.app_key is not None:
        conditions.append(DeliveryReport.app_key == query.app_key)
    if query.since is not None:
        conditions.append(DeliveryReport.received_at >= query.since)
    if query.until is not None:
        conditions.append(DeliveryReport.received_at < query.until)
    return (
        select(start, DeliveryReport.status, func.count())
        .where(*conditions)
        .group_by(start, DeliveryReport.status)
    )


def delivery_stats(session: Session, query: StatsQuery) -> list[dict[str, Any]]:
    """One item per non-empty local bucket, oldest first: totals, rate and counts by status."""
    dialect = session.get_bind().dialect.name
    for slot in _slots_for(query):
        counts: SlotCounts = {}
        for start, status, count in session.execute(stats_statement(dialect, query, slot)):
            counts.setdefault(_as_utc(start), Counter())[status] += count
        buckets = fold(counts, slot, query.zone, query.bucket)
        if buckets is not None:
            return [_bucket_item(start, buckets[start], query.zone) for start in sorted(buckets)]
    raise AssertionError("one-second slots cannot straddle: every UTC offset is whole seconds")


def fold(counts: SlotCounts, slot: int, zone: ZoneInfo, bucket: str) -> SlotCounts | None:
    """The slots' counts summed per local bucket (keyed by its UTC start), or None when a slot
    straddles a bucket boundary and finer slots are needed."""
    width = timedelta(seconds=slot)
    buckets: SlotCounts = {}
    for start, by_status in counts.items():
        key = bucket_start(start, zone, bucket)
        if slot > 1 and bucket_start(start + width - _EPSILON, zone, bucket) != key:
            return None
        buckets.setdefault(key, Counter()).update(by_status)
    return buckets


def _slots_for(query: StatsQuery) -> tuple[int, ...]:
    """The slot lengths to try: start with whole hours unless the zone's offset (now, or at
    the range's ends) already says they cannot fit."""
    instants = [datetime.now(UTC), query.since, query.until]
    offsets = [i.astimezone(query.zone).utcoffset() for i in instants if i is not None]
    seconds = [int(o.total_seconds()) for o in offsets if o is not None]
    return tuple(s for s in SLOTS if all(offset % s == 0 for offset in seconds))


def _bucket_item(start: datetime, by_status: Counter[int], zone: ZoneInfo) -> dict[str, Any]:
    total = sum(by_status.values())
    delivered = by_status.get(DELIVERED, 0)
    return {
        "start": local_iso(start, zone),
        "total": total,
        "delivered": delivered,
        "failed": total - delivered,
        "delivery_rate": round(delivered / total, 4),
        "by_status": {str(code): by_status[code] for code in sorted(by_status)},
    }


def local_iso(instant: datetime, zone: ZoneInfo) -> str:
    """`2025-11-25T00:00:00+08:00`: the instant in the zone, with its offset (`Z` when zero)."""
    text = instant.astimezone(zone).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _as_utc(value: datetime | int | Decimal) -> datetime:
    """A slot start from either backend (an aware datetime, or epoch seconds) as aware UTC."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromtimestamp(int(value), UTC)
