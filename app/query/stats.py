"""Delivery statistics per UTC hour or day, grouped in SQL on either backend."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, DateTime, Select, String, func, literal_column, select
from sqlalchemy.orm import Session

from app.jsms.codes import DELIVERED
from app.query.items import iso_utc
from app.query.params import StatsQuery
from app.store.models import DeliveryReport

# Constants, not bound parameters: the same expression must appear in SELECT and GROUP BY.
_SQLITE_FORMAT = {"hour": "'%Y-%m-%d %H:00:00'", "day": "'%Y-%m-%d 00:00:00'"}


def bucket_start(dialect: str, bucket: str) -> ColumnElement[Any]:
    """The UTC start of the hour or day `received_at` falls in."""
    column = DeliveryReport.received_at
    if dialect == "postgresql":
        utc = func.timezone(literal_column("'UTC'"), column)
        return func.date_trunc(literal_column(f"'{bucket}'"), utc, type_=DateTime())
    # SQLite stores naive UTC text, so truncating the text is truncating in UTC.
    return func.strftime(literal_column(_SQLITE_FORMAT[bucket]), column, type_=String())


def stats_statement(dialect: str, query: StatsQuery) -> Select[tuple[Any, int, int]]:
    """`SELECT bucket, status, count(*) … GROUP BY bucket, status` for the query."""
    start = bucket_start(dialect, query.bucket)
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
    """One item per non-empty bucket, oldest first: totals, delivery rate and counts by status."""
    statement = stats_statement(session.get_bind().dialect.name, query)
    buckets: dict[datetime, Counter[int]] = {}
    for bucket, status, count in session.execute(statement):
        buckets.setdefault(_as_utc(bucket), Counter())[status] += count
    return [_bucket_item(start_at, buckets[start_at]) for start_at in sorted(buckets)]


def _bucket_item(start: datetime, by_status: Counter[int]) -> dict[str, Any]:
    total = sum(by_status.values())
    delivered = by_status.get(DELIVERED, 0)
    return {
        "start": iso_utc(start),
        "total": total,
        "delivered": delivered,
        "failed": total - delivered,
        "delivery_rate": round(delivered / total, 4),
        "by_status": {str(code): by_status[code] for code in sorted(by_status)},
    }


def _as_utc(value: datetime | str) -> datetime:
    """A bucket start from either backend (naive UTC datetime or text) as an aware datetime."""
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed.replace(tzinfo=UTC)
