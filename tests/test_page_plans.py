"""The plan PostgreSQL makes for an analyst's first page of failures: the partial index on
undelivered reports, read index-only, whatever the page's other columns."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from app.query import lists
from app.query.params import ReportFilter
from app.store.db import Database

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
