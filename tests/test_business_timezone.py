"""Days where the business lives: BUSINESS_TIMEZONE and `tz` through the stats API, the BI
views, the status page and the settings, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from app import create_app
from app.config import Settings, load_settings
from app.store.db import Database
from app.store.models import SyncState
from app.store.schema import upgrade_to_head
from app.timezones import offset_periods, zone_named
from tests.support import make_settings

from .api_data import get, reply, report, store

# 15:30Z is 23:30 on 05-01 in Shanghai; 16:30Z is 00:30 on 05-02 there. One UTC day.
EVENING_AND_NIGHT = ("2024-05-01 15:30", "2024-05-01 16:30")


@pytest.fixture
def evening_and_night(database: Database) -> None:
    """app-one: a delivered and a failed (4004) report and a reply at each of the two times."""
    evening, night = EVENING_AND_NIGHT
    store(
        database,
        "app-one",
        [report("a", status=4001, when=evening), report("b", status=4004, when=evening)]
        + [report("c", status=4001, when=night), report("d", status=4004, when=night)],
    )
    store(
        database, "app-one", [reply("13800000001", "yes", evening), reply("1380002", "no", night)]
    )


def buckets(client: FlaskClient, **params: Any) -> list[tuple[str, int]]:
    response = get(client, "/stats/delivery", **params)
    assert response.status_code == 200, response.get_json()
    return [(b["start"], b["total"]) for b in response.get_json()["items"]]


# --- stats API --------------------------------------------------------------------------------


def test_stats_days_are_business_days_by_default(
    client: FlaskClient, evening_and_night: None
) -> None:
    body = get(client, "/stats/delivery").get_json()
    assert body["timezone"] == "Asia/Shanghai"
    assert [(b["start"], b["total"], b["delivered"]) for b in body["items"]] == [
        ("2024-05-01T00:00:00+08:00", 2, 1),
        ("2024-05-02T00:00:00+08:00", 2, 1),
    ]


def test_tz_utc_gives_utc_days(client: FlaskClient, evening_and_night: None) -> None:
    assert buckets(client, tz="UTC") == [("2024-05-01T00:00:00Z", 4)]
    assert get(client, "/stats/delivery", tz="UTC").get_json()["timezone"] == "UTC"


def test_business_timezone_setting_is_the_default(
    database_url: str, evening_and_night: None
) -> None:
    app = create_app(make_settings(database_url, business_timezone="UTC"))
    try:
        assert buckets(app.test_client()) == [("2024-05-01T00:00:00Z", 4)]
    finally:
        app.extensions["database"].engine.dispose()


def test_since_and_until_without_an_offset_are_in_the_zone(
    client: FlaskClient, evening_and_night: None
) -> None:
    # Shanghai's 05-02 starts at 16:00Z: only the night reports; UTC's 05-02 has none.
    assert buckets(client, since="2024-05-02") == [("2024-05-02T00:00:00+08:00", 2)]
    assert buckets(client, since="2024-05-02", tz="UTC") == []
    assert buckets(client, until="2024-05-02T00:00:00") == [("2024-05-01T00:00:00+08:00", 2)]
    # An explicit offset or epoch milliseconds mean what they say, whatever the zone.
    assert buckets(client, since="2024-05-01T16:00:00Z") == [("2024-05-02T00:00:00+08:00", 2)]
    assert buckets(client, since="1714579200000") == [("2024-05-02T00:00:00+08:00", 2)]


def test_hour_buckets_are_local_hours(client: FlaskClient, evening_and_night: None) -> None:
    assert buckets(client, bucket="hour") == [
        ("2024-05-01T23:00:00+08:00", 2),
        ("2024-05-02T00:00:00+08:00", 2),
    ]


@pytest.mark.parametrize(
    ("tz", "times", "expected"),
    [
        # Nepal, +05:45: local midnight is 18:15Z, inside a UTC hour.
        (
            "Asia/Kathmandu",
            ["2024-05-01 18:14:59", "2024-05-01 18:15", "2024-05-01 18:59"],
            [("2024-05-01T00:00:00+05:45", 1), ("2024-05-02T00:00:00+05:45", 2)],
        ),
        # India, +05:30.
        (
            "Asia/Kolkata",
            ["2024-05-01 18:29:59", "2024-05-01 18:30"],
            [("2024-05-01T00:00:00+05:30", 1), ("2024-05-02T00:00:00+05:30", 1)],
        ),
    ],
)
def test_zones_with_offsets_that_are_not_whole_hours(
    client: FlaskClient, database: Database, tz: str, times: list[str], expected: Any
) -> None:
    store(database, "app-one", [report(f"m{i}", when=t) for i, t in enumerate(times)])
    assert buckets(client, tz=tz) == expected


def test_a_25_hour_dst_day_is_one_bucket(client: FlaskClient, database: Database) -> None:
    # Berlin, last Sunday of October 2024: 00:00 CEST is 22:00Z the day before, and 24:00 CET
    # is 23:00Z; one report per UTC hour from 21:00Z on the 26th to 23:00Z on the 27th.
    first = datetime(2024, 10, 26, 21)
    hours = [first + timedelta(hours=n) for n in range(27)]
    store(
        database,
        "app-one",
        [report(f"h{n}", when=f"{t:%Y-%m-%d %H:%M}") for n, t in enumerate(hours)],
    )
    assert buckets(client, tz="Europe/Berlin") == [
        ("2024-10-26T00:00:00+02:00", 1),
        ("2024-10-27T00:00:00+02:00", 25),
        ("2024-10-28T00:00:00+01:00", 1),
    ]
    sunday = buckets(
        client, tz="Europe/Berlin", bucket="hour", since="2024-10-27", until="2024-10-28"
    )
    assert len(sunday) == 25 and all(total == 1 for _, total in sunday)
    assert sunday[2:4] == [("2024-10-27T02:00:00+02:00", 1), ("2024-10-27T02:00:00+01:00", 1)]


def test_a_23_hour_dst_day_is_one_bucket(client: FlaskClient, database: Database) -> None:
    # Berlin, last Sunday of March 2024: 23:00Z on the 30th to 22:00Z on the 31st is 23 hours.
    first = datetime(2024, 3, 30, 23)
    store(
        database,
        "app-one",
        [report(f"h{n}", when=f"{first + timedelta(hours=n):%Y-%m-%d %H:%M}") for n in range(24)],
    )
    assert buckets(client, tz="Europe/Berlin") == [
        ("2024-03-31T00:00:00+01:00", 23),
        ("2024-04-01T00:00:00+02:00", 1),
    ]


def test_an_old_offset_is_not_mistaken_for_todays(client: FlaskClient, database: Database) -> None:
    # Moscow was UTC+4 until 2014-10-26 and is UTC+3 since: days before then start at 20:00Z.
    times = ["2014-10-25 19:30", "2014-10-25 20:30", "2024-05-01 20:30"]
    store(database, "app-one", [report(f"m{n}", when=t) for n, t in enumerate(times)])
    assert buckets(client, tz="Europe/Moscow") == [
        ("2014-10-25T00:00:00+04:00", 1),
        ("2014-10-26T00:00:00+04:00", 1),
        ("2024-05-01T00:00:00+03:00", 1),
    ]


@pytest.mark.parametrize(
    "tz", ["Mars/Olympus", "asia/shanghai", "localtime", "../etc/passwd", "", "America"]
)
def test_a_bad_tz_is_a_json_400_naming_tz(client: FlaskClient, tz: str) -> None:
    response = get(client, "/stats/delivery", tz=tz)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_parameter" and error["parameter"] == "tz"


def test_item_times_stay_utc(client: FlaskClient, evening_and_night: None) -> None:
    items = get(client, "/reports").get_json()["items"]
    assert {i["received_at"] for i in items} == {"2024-05-01T15:30:00Z", "2024-05-01T16:30:00Z"}
    csv = get(client, "/reports", format="csv").get_data(as_text=True)
    assert "2024-05-01T16:30:00Z" in csv and "+08:00" not in csv


# --- BI views ---------------------------------------------------------------------------------


def _rows(database: Database, sql: str) -> list[tuple[Any, ...]]:
    with database.engine.connect() as connection:
        return [
            tuple(v.isoformat() if isinstance(v, date) else v for v in row)
            for row in connection.execute(text(sql))
        ]


VIEW_DAYS = {
    "daily_delivery_rate": "SELECT day, total, timezone FROM {} ORDER BY day",
    "failures_by_status": "SELECT day, failures, timezone FROM {} ORDER BY day",
    "daily_replies": "SELECT day, replies, timezone FROM {} ORDER BY day",
}


@pytest.mark.parametrize("view", VIEW_DAYS)
def test_views_count_business_days(database: Database, evening_and_night: None, view: str) -> None:
    per_day = 2 if view == "daily_delivery_rate" else 1
    assert _rows(database, VIEW_DAYS[view].format(view)) == [
        ("2024-05-01", per_day, "Asia/Shanghai"),
        ("2024-05-02", per_day, "Asia/Shanghai"),
    ]
    utc_sql = VIEW_DAYS[view].replace(", timezone", "").format(f"{view}_utc")
    assert _rows(database, utc_sql) == [("2024-05-01", 2 * per_day)]


@pytest.fixture
def released_in(database_url: str) -> Iterator[Any]:
    """`release(zone)` runs `jsms migrate` with BUSINESS_TIMEZONE=zone; the default comes back
    afterwards (the PostgreSQL test database is shared by the session)."""

    def release(zone: str) -> None:
        app = create_app(make_settings(database_url, business_timezone=zone))
        try:
            result = app.test_cli_runner().invoke(args=["jsms", "migrate"])
            assert result.exit_code == 0 and zone in result.output, result.output
        finally:
            app.extensions["database"].engine.dispose()

    yield release
    upgrade_to_head(database_url)


def test_a_new_zone_takes_effect_on_release(
    database: Database, evening_and_night: None, released_in: Any
) -> None:
    released_in("UTC")
    sql = VIEW_DAYS["daily_delivery_rate"].format("daily_delivery_rate")
    assert _rows(database, sql) == [("2024-05-01", 4, "UTC")]


def test_views_keep_a_25_hour_day_whole(database: Database, released_in: Any) -> None:
    # SQLite has no tz database: its views read the offsets `jsms migrate` wrote.
    released_in("Europe/Berlin")
    times = ["2024-10-26 21:59:59", "2024-10-26 22:00", "2024-10-27 22:59:59", "2024-10-27 23:00"]
    store(database, "app-one", [report(f"b{n}", when=t) for n, t in enumerate(times)])
    store(database, "app-one", [reply("13800000001", "x", t) for t in times[1:3]])
    assert _rows(database, "SELECT day, total FROM daily_delivery_rate ORDER BY day") == [
        ("2024-10-26", 1),
        ("2024-10-27", 2),
        ("2024-10-28", 1),
    ]
    assert _rows(database, "SELECT day, replies FROM daily_replies") == [("2024-10-27", 2)]


def test_offset_periods_find_each_change_to_the_second() -> None:
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)
    assert offset_periods(zone_named("Europe/Berlin"), start, end) == [
        (start, 3600),
        (datetime(2024, 3, 31, 1, tzinfo=UTC), 7200),
        (datetime(2024, 10, 27, 1, tzinfo=UTC), 3600),
    ]
    assert offset_periods(zone_named("Asia/Shanghai"), start, end) == [(start, 28800)]


# --- settings, doctor, status page ------------------------------------------------------------


def test_business_timezone_defaults_to_shanghai(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUSINESS_TIMEZONE", raising=False)
    assert Settings(_env_file=None).business_timezone == "Asia/Shanghai"  # type: ignore[call-arg]


def test_an_unknown_business_timezone_stops_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUSINESS_TIMEZONE", "Asia/Beijing")
    with pytest.raises(
        SystemExit, match="BUSINESS_TIMEZONE: .*unknown IANA time zone 'Asia/Beijing'"
    ):
        load_settings()


def test_doctor_shows_the_business_timezone(database_url: str, released_in: Any) -> None:
    app = create_app(make_settings(database_url, business_timezone="Europe/Berlin", jsms_apps={}))
    try:
        output = app.test_cli_runner().invoke(args=["jsms", "doctor"]).output
        assert "[warn] BUSINESS_TIMEZONE: Europe/Berlin" in output
        assert "the BI views count days in Asia/Shanghai" in output
        released_in("Europe/Berlin")
        output = app.test_cli_runner().invoke(args=["jsms", "doctor"]).output
        assert "[  ok] BUSINESS_TIMEZONE: Europe/Berlin (UTC+0" in output
    finally:
        app.extensions["database"].engine.dispose()


def test_status_page_chart_days_are_business_days(
    app: Flask, client: FlaskClient, database: Database
) -> None:
    # 00:30 yesterday in Shanghai is 16:30Z the day before yesterday.
    zone = app.config["SETTINGS"].business_zone()
    yesterday = datetime.now(zone).date() - timedelta(days=1)
    at = datetime(yesterday.year, yesterday.month, yesterday.day, 0, 30, tzinfo=zone)
    store(database, "app-one", [report("s", when=f"{at.astimezone(UTC):%Y-%m-%d %H:%M}")])
    with database.session() as session:
        attempt = datetime(2024, 5, 1, 16, 30, tzinfo=UTC)
        session.add(SyncState(app_key="app-one", kind="report", last_attempt_at=attempt))
        session.commit()
    client.post("/login", data={"token": "test-token"})
    html = client.get("/").get_data(as_text=True)
    assert f'data-day="{yesterday.isoformat()}" data-rate="1.0000"' in html
    assert "days in Asia/Shanghai" in html and "Asia/Shanghai (UTC+08:00;" in html
    assert "2024-05-02 00:30" in html and "2024-05-01 16:30" not in html
