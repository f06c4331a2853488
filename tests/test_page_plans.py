"""How PostgreSQL serves a page: an analyst's first page of failures reads the partial index on
undelivered reports index-only, whatever the page's other columns; psycopg reads its times as
naive UTC datetimes, which the JSON writer writes as UTC."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from flask import Flask

from app.query import api, lists, pg_pages
from app.query.items import iso_utc
from app.query.params import ReportFilter
from app.store.db import Database
from tests import api_data

DAY = datetime(2024, 5, 13, tzinfo=UTC)


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in _plan_nodes(child))]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_first_page_of_failures_reads_the_failures_index_only(store: Database) -> None:
    """`extra` (unbounded text, in no index) is read by primary key for the page's rows only:
    read in the scan, it made the planner walk the time index of every app instead."""
    with store.engine.connect() as connection:
        # Three apps over four days (ids in arrival order), 8 % undelivered.
        connection.exec_driver_sql(
            "INSERT INTO delivery_reports (app_key, msg_id, phone, status, delivered, "
            "received_at, source, ingested_at) "
            "SELECT 'app-' || mod(n, 3), n::text, '1380000' || lpad(mod(n, 10000)::text, 4, '0'), "
            "CASE WHEN mod(n, 25) < 2 THEN 4003 ELSE 4001 END, mod(n, 25) >= 2, "
            "timestamptz '2024-05-11' + n * interval '4 seconds', 'callback', now() "
            "FROM generate_series(1, 86400) AS n"
        )
        connection.commit()
    with psycopg.connect(store.url.replace("+psycopg", ""), autocommit=True) as admin:
        admin.execute("VACUUM ANALYZE delivery_reports")
    until = DAY.replace(day=14)
    walk = lists.report_walk(ReportFilter(app_key="app-1", delivered=False, since=DAY, until=until))
    statement = lists.page_statement(walk.model, walk.filters)
    compiled = statement.compile(dialect=store.reader_engine.dialect)
    values = {**compiled.params, **walk.values, "after": 0, "horizon": 10**9, "limit": 101}
    with store.reader_engine.connect() as connection:
        driver = connection.connection.driver_connection
        assert driver is not None
        row = driver.execute("EXPLAIN (FORMAT JSON) " + compiled.string, values).fetchone()
    assert row is not None
    plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
    scans = [n for n in _plan_nodes(plan[0]["Plan"]) if "Scan" in n["Node Type"]]
    assert scans[0]["Node Type"] == "Index Only Scan", scans
    assert scans[0]["Index Name"] == "ix_delivery_reports_failures", scans


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_pages_times_are_the_stored_instants_whatever_the_sessions_zone(
    store: Database,
) -> None:
    """psycopg reads a page's `timestamptz` values as naive UTC datetimes (their binary form
    is UTC): the same instants as aware ones, whatever zone the session is in."""
    api_data.store(store, "app-one", [api_data.report("m1", when="2024-05-13 08:11")])
    walk = lists.report_walk(ReportFilter(app_key="app-one"))
    statement = lists.page_statement(walk.model, walk.filters)
    horizon = lists.horizon_statement("postgresql", walk.model)
    with store.reader_engine.connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.exec_driver_sql("SET timezone = 'Asia/Shanghai'")
        values = {**walk.values, "after": 0, "limit": 10}
        _, rows = pg_pages.read_page(connection, horizon, statement, values)
        connection.exec_driver_sql("RESET timezone")
    [row] = rows
    expected = api_data.at("2024-05-13 08:11")
    assert row[6] == expected.replace(tzinfo=None)  # received_at
    assert iso_utc(row[6]) == iso_utc(expected) == "2024-05-13T08:11:00Z"


def test_the_json_writer_and_iso_utc_read_a_naive_time_as_utc() -> None:
    aware = datetime(2024, 5, 13, 8, 11, 33, 500000, tzinfo=UTC)
    naive = aware.replace(tzinfo=None)
    assert iso_utc(naive) == iso_utc(aware) == "2024-05-13T08:11:33.500000Z"
    with Flask(__name__).app_context():
        assert api._json({"at": naive}).get_data() == api._json({"at": aware}).get_data()
