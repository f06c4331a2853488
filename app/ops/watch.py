"""The status page's balance and review sections: each app's balance with the last day's
consumption and the time left at that rate, and the rejections of the last 7 days."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.jsms.accounts import BALANCE_FIELDS
from app.query.balances import balance_items
from app.query.reviews import REJECTED, status_text
from app.store.models import ReviewResult

REJECTIONS_DAYS = 7
REJECTIONS_SHOWN = 50


def watch_context(session: Session, apps: Iterable[str], now: datetime) -> dict[str, Any]:
    """What the page's own template block (`status_watch.html`) renders."""
    return {
        "balances": [_balance_row(item) for item in balance_items(session, apps, now)],
        "rejections": rejections(session, now),
        "rejections_days": REJECTIONS_DAYS,
    }


def rejections(session: Session, now: datetime) -> list[dict[str, Any]]:
    """Template and signature rejections received in the last REJECTIONS_DAYS, newest first."""
    rows = session.execute(
        select(
            ReviewResult.app_key,
            ReviewResult.review_type,
            ReviewResult.subject_id,
            ReviewResult.status,
            ReviewResult.refuse_reason,
            ReviewResult.ingested_at,
        )
        .where(
            ReviewResult.status == REJECTED,
            ReviewResult.ingested_at >= now - timedelta(days=REJECTIONS_DAYS),
        )
        .order_by(ReviewResult.ingested_at.desc(), ReviewResult.id.desc())
        .limit(REJECTIONS_SHOWN)
    )
    keys = ("app_key", "kind", "subject_id", "status", "refuse_reason", "received_at")
    return [
        {**dict(zip(keys, row, strict=True)), "status_text": status_text(row[1], row[3])}
        for row in rows
    ]


def _balance_row(item: dict[str, Any]) -> dict[str, Any]:
    """An API balance item with, per kind read, its count, consumption and time left."""
    kinds = [
        {
            "kind": kind,
            "count": item[field],
            "consumed": item["consumed_last_day"][kind],
            "left": _duration(item["seconds_left"][kind]),
            "red": (item["seconds_left"][kind] or float("inf")) < 86400,
        }
        for field, kind in BALANCE_FIELDS.items()
        if item[field] is not None
    ]
    return {**item, "kinds": kinds, "measured": _duration(item["consumption_seconds"])}


def _duration(seconds: float | None) -> str:
    """`2 d 3 h`, `5 h 10 min`, `40 min`; `-` when nothing is spent."""
    if seconds is None:
        return "-"
    minutes = int(seconds // 60)
    days, hours, minutes = minutes // 1440, minutes // 60 % 24, minutes % 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"
