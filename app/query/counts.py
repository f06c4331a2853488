"""Delivery counts per slot of UTC time read from the rollup (migration 0013) instead of the
reports, for slots made of whole 15-minute buckets.

The rollup counts reports per 15-minute UTC bucket, so it answers exactly for the buckets a
range covers whole; a `since` or `until` inside a bucket leaves an edge of less than 15 minutes
at each end, counted from `delivery_reports` (an index range scan). What the rollup holds is
`delivery_rollup` plus the changes not folded into it yet, summed in one statement (one
snapshot: a fold committing meanwhile is seen whole or not at all).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

BUCKET_SECONDS = 900
_BUCKET = timedelta(seconds=BUCKET_SECONDS)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

TimeRange = tuple[datetime | None, datetime | None]


def whole_buckets(seconds: int, origin: int) -> bool:
    """Whether every slot of `seconds` from `origin` (epoch seconds) is whole buckets."""
    return seconds % BUCKET_SECONDS == 0 and origin % BUCKET_SECONDS == 0


def split_range(
    since: datetime | None, until: datetime | None
) -> tuple[tuple[int | None, int | None] | None, list[TimeRange]]:
    """[since, until) as the buckets it covers whole (first and end bucket in epoch seconds,
    None: open; None for no whole bucket) and the edges outside them, to count from reports."""
    first = None if since is None else _bucket_at(since, up=True)
    end = None if until is None else _bucket_at(until, up=False)
    if first is not None and end is not None and first >= end:
        return None, [(since, until)]
    edges: list[TimeRange] = []
    if since is not None and first is not None and since < _instant(first):
        edges.append((since, _instant(first)))
    if until is not None and end is not None and _instant(end) < until:
        edges.append((_instant(end), until))
    return (first, end), edges


def rollup_rows(
    session: Session,
    app_key: str | None,
    buckets: tuple[int | None, int | None],
    seconds: int,
    origin: int,
) -> list[tuple[int, int, int]]:
    """(slot start in epoch seconds, status, reports) for every non-empty slot of `seconds`
    from `origin` over the buckets [first, end), of one app or all."""
    first, end = buckets
    conditions = ["true"]
    parameters: dict[str, Any] = {}
    if app_key is not None:
        conditions.append("app_key = :app_key")
        parameters["app_key"] = app_key
    if first is not None:
        conditions.append(f"bucket >= {int(first)}")
    if end is not None:
        conditions.append(f"bucket < {int(end)}")
    # Integers inlined, not bound: the slot expression must read the same in GROUP BY, and
    # PostgreSQL then pushes the bucket range into both halves of the UNION ALL.
    slot = f"((bucket - {int(origin)}) / {int(seconds)}) * {int(seconds)} + {int(origin)}"
    sql = (
        f"SELECT {slot} AS slot, status, sum(reports) AS reports FROM ("
        "SELECT app_key, bucket, status, reports FROM delivery_rollup"
        " UNION ALL SELECT app_key, bucket, status, reports FROM delivery_rollup_changes"
        f") AS counts WHERE {' AND '.join(conditions)}"
        " GROUP BY 1, 2 HAVING sum(reports) <> 0"
    )
    return [(int(s), int(c), int(n)) for s, c, n in session.execute(text(sql), parameters)]


def _bucket_at(instant: datetime, up: bool) -> int:
    """The start (epoch seconds) of the bucket `instant` is in, or with `up`, of the first
    bucket starting at or after it."""
    whole, rest = divmod(instant - _EPOCH, _BUCKET)
    return (whole + (1 if up and rest else 0)) * BUCKET_SECONDS


def _instant(epoch_seconds: int) -> datetime:
    return _EPOCH + timedelta(seconds=epoch_seconds)
