"""The BI views against hand-computed expectations, on both databases: here the `*_utc` views
(UTC days); the business-day views are in test_business_timezone.py."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy import text

from app.store.db import Database

from .api_data import reply, report, store


def _rows(database: Database, sql: str) -> list[tuple[Any, ...]]:
    with database.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(sql))]


def _day(value: Any) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


@pytest.fixture
def two_days(database: Database) -> None:
    """app-one 2024-05-01: 3 delivered, 1 x 4002, 1 x 4004 (one at 23:59:59 UTC);
    app-one 2024-05-02: 1 x 4004; app-two 2024-05-01: 1 delivered, 1 x 9999 (unknown code)."""
    store(
        database,
        "app-one",
        [
            report("a", status=4001, when="2024-05-01 00:00"),
            report("b", status=4001, when="2024-05-01 12:00"),
            report("c", status=4001, when="2024-05-01 16:30"),  # 00:30 on 05-02 in China: UTC day
            report("d", status=4002, when="2024-05-01 13:00"),
            report("e", status=4004, when="2024-05-01 23:59:59"),
            report("f", status=4004, when="2024-05-02 00:00"),
        ],
    )
    store(
        database,
        "app-two",
        [
            report("g", status=4001, when="2024-05-01 09:00"),
            report("h", status=9999, when="2024-05-01 10:00"),
        ],
    )


def test_daily_delivery_rate(database: Database, two_days: None) -> None:
    rows = _rows(
        database,
        "SELECT app_key, day, total, delivered, failed, delivery_rate FROM daily_delivery_rate_utc "
        "ORDER BY app_key, day",
    )
    assert [(a, _day(d), t, int(dv), int(f), float(r)) for a, d, t, dv, f, r in rows] == [
        ("app-one", "2024-05-01", 5, 3, 2, 0.6),
        ("app-one", "2024-05-02", 1, 0, 1, 0.0),
        ("app-two", "2024-05-01", 2, 1, 1, 0.5),
    ]


def test_failures_by_status(database: Database, two_days: None) -> None:
    rows = _rows(
        database,
        "SELECT app_key, day, status, status_text, failures FROM failures_by_status_utc "
        "ORDER BY app_key, day, status",
    )
    assert [(a, _day(d), s, t, f) for a, d, s, t, f in rows] == [
        ("app-one", "2024-05-01", 4002, "number is on the carrier's blacklist", 1),
        ("app-one", "2024-05-01", 4004, "number does not exist", 1),
        ("app-one", "2024-05-02", 4004, "number does not exist", 1),
        ("app-two", "2024-05-01", 9999, "unknown status", 1),
    ]


def test_daily_replies(database: Database) -> None:
    store(
        database,
        "app-one",
        [
            reply("13800000001", "yes", "2024-05-01 08:00"),
            reply("13800000001", "no", "2024-05-01 09:00"),
            reply("13800000002", "stop", "2024-05-01 23:59:59"),
            reply("13800000002", "stop", "2024-05-02 00:00"),
        ],
    )
    store(database, "app-two", [reply("13800000001", "hi", "2024-05-02 10:00")])
    rows = _rows(
        database,
        "SELECT app_key, day, replies, phones FROM daily_replies_utc ORDER BY app_key, day",
    )
    assert [(a, _day(d), r, p) for a, d, r, p in rows] == [
        ("app-one", "2024-05-01", 3, 2),
        ("app-one", "2024-05-02", 1, 1),
        ("app-two", "2024-05-02", 1, 1),
    ]


def test_views_are_empty_on_an_empty_store(database: Database) -> None:
    for view in ("daily_delivery_rate", "failures_by_status", "daily_replies"):
        assert _rows(database, f"SELECT * FROM {view}") == []
        assert _rows(database, f"SELECT * FROM {view}_utc") == []
