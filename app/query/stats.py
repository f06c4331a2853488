"""Delivery statistics per local hour or day of a time zone, the same way on either backend.

The database counts reports per status and per slot of UTC time; Python folds the slots into the
zone's local buckets with `zoneinfo`. While the zone's offset stays the same over the range, a
slot is the bucket itself (a day or an hour shifted by the offset); across a DST change it is a
UTC hour (finer only for offsets that are not whole hours). A slot is never split: if one
straddles a local bucket's boundary, the counts are asked for again with finer slots. So SQLite,
which has no tz database, gives exactly what PostgreSQL gives, and a 23- or 25-hour DST day is
one bucket. Slots made of whole 15-minute UTC buckets are read from the delivery rollup
(`app/query/counts.py`), so a request costs the same whatever the table holds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, DateTime, Integer, Select, func, literal_column, select
from sqlalchemy.orm import Session

from app.jsms.codes import DELIVERED
from app.query.counts import rollup_rows, split_range, whole_buckets
from app.query.params import StatsQuery
from app.store.models import DeliveryReport
from app.timezones import bucket_start

# Fallback slot lengths in seconds, coarsest first: every offset since 2000 is whole 15 minutes.
FINE_SLOTS = (3600, 1800, 900, 60, 1)
BUCKET_SECONDS = {"day": 86400, "hour": 3600}
_EPSILON = timedelta(microseconds=1)

SlotCounts = dict[datetime, Counter[int]]


@dataclass(frozen=True, slots=True)
class SlotGrid:
    """UTC time cut into `seconds`-long slots, starting at `origin` seconds after the epoch."""

    seconds: int
    origin: int = 0


def slot_start(dialect: str, slot: SlotGrid) -> ColumnElement[Any]:
    """The start of the slot that `received_at` falls in."""
    column = DeliveryReport.received_at
    # Constants, not bound parameters: the same expression must appear in SELECT and GROUP BY.
    if dialect == "postgresql":
        origin_at = datetime.fromtimestamp(slot.origin, UTC).isoformat()
        origin: ColumnElement[Any] = literal_column(f"TIMESTAMPTZ '{origin_at}'")
        width: ColumnElement[Any] = literal_column(f"INTERVAL '{slot.seconds} seconds'")
        return func.date_bin(width, column, origin, type_=DateTime(timezone=True))
    # SQLite stores naive UTC text: whole epoch seconds, rounded down to the slot (every stored
    # time is after the origin, so integer division rounds down).
    seconds = func.cast(func.strftime(literal_column("'%s'"), column), Integer)
    origin_s: ColumnElement[Any] = literal_column(str(slot.origin))
    width_s: ColumnElement[Any] = literal_column(str(slot.seconds))
    return ((seconds - origin_s) / width_s * width_s + origin_s).label(None)


def stats_statement(
    dialect: str, query: StatsQuery, slot: SlotGrid
) -> Select[tuple[Any, int, int]]:
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


def slot_rows(session: Session, query: StatsQuery, slot: SlotGrid) -> list[tuple[Any, int, int]]:
    """(slot start, status, count) for every non-empty slot: from the rollup where slots are
    whole 15-minute buckets (any zone's hours and days since 2000), the edges of the range that
    cut a bucket and every other slot from the reports."""
    dialect = session.get_bind().dialect.name
    if not whole_buckets(slot.seconds, slot.origin):
        return [tuple(row) for row in session.execute(stats_statement(dialect, query, slot))]
    buckets, edges = split_range(query.since, query.until)
    rows: list[tuple[Any, int, int]] = []
    if buckets is not None:
        rows += rollup_rows(session, query.app_key, buckets, slot.seconds, slot.origin)
    for since, until in edges:
        edge = replace(query, since=since, until=until)
        rows += [tuple(row) for row in session.execute(stats_statement(dialect, edge, slot))]
    return rows


def delivery_stats(session: Session, query: StatsQuery) -> list[dict[str, Any]]:
    """One item per non-empty local bucket, oldest first: totals, rate and counts by status."""
    for slot in slots_for(query):
        counts: SlotCounts = {}
        for start, status, count in slot_rows(session, query, slot):
            counts.setdefault(_as_utc(start), Counter())[status] += count
        buckets = fold(counts, slot.seconds, query.zone, query.bucket)
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


def slots_for(query: StatsQuery) -> list[SlotGrid]:
    """The slots to try, coarsest first: the bucket itself while the zone's offset looks
    constant over the range (at its ends, now, and, for an open range, in January and July),
    then UTC slots that every offset seen divides."""
    now = datetime.now(UTC)
    instants = [now, query.since, query.until]
    if query.since is None or query.until is None:
        instants += [now.replace(month=1, day=1), now.replace(month=7, day=1)]
    offsets = {_offset_seconds(i, query.zone) for i in instants if i is not None}
    slots = []
    if len(offsets) == 1:
        # Local 1970-01-01 00:00 at that offset: every later local day or hour starts k slots on.
        slots.append(SlotGrid(BUCKET_SECONDS[query.bucket], -next(iter(offsets))))
    slots += [SlotGrid(s) for s in FINE_SLOTS if all(offset % s == 0 for offset in offsets)]
    return slots


def _offset_seconds(instant: datetime, zone: ZoneInfo) -> int:
    offset = instant.astimezone(zone).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


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


def _as_utc(value: datetime | int) -> datetime:
    """A slot start from either backend (an aware datetime, or epoch seconds) as aware UTC."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromtimestamp(int(value), UTC)
