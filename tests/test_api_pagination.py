"""Keyset pagination while ingestion goes on: nothing missed, nothing repeated."""

from __future__ import annotations

import csv
import io
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Select, event, select, text

from app.jsms.records import ParsedBatch
from app.query import lists, pg_pages
from app.query.params import ReportFilter
from app.store.db import Database
from app.store.ingest import RawPayload, ingest
from app.store.models import DeliveryReport
from tests.support import guard_postgres

from . import api_data
from .api_data import get, report, store, walk

WRITERS = 3
BATCHES_PER_WRITER = 15
BATCH = 7


def _all_ids(database: Database) -> list[int]:
    with database.session() as session:
        return list(session.scalars(select(DeliveryReport.id).order_by(DeliveryReport.id)))


def test_walk_under_concurrent_inserts_misses_and_repeats_nothing(
    client: FlaskClient, database: Database
) -> None:
    for n in range(12):
        store(database, "app-one", [report(f"pre-{n}-{i}", f"1390000{i:04d}") for i in range(10)])
    present_at_start = set(_all_ids(database))
    start = threading.Barrier(WRITERS + 1)

    def writer(number: int) -> None:
        start.wait()
        for batch in range(BATCHES_PER_WRITER):
            records = [report(f"w{number}-{batch}-{i}", f"1370000{i:04d}") for i in range(BATCH)]
            store(database, "app-one", records)

    with ThreadPoolExecutor(WRITERS) as pool:
        futures = [pool.submit(writer, n) for n in range(WRITERS)]
        start.wait()
        walked, resume = walk(client, "/reports", app_key="app-one", limit=9)
        for future in futures:
            future.result()

    walked_ids = [item["id"] for item in walked]
    assert len(walked_ids) == len(set(walked_ids)), "a record was returned twice"
    assert walked_ids == sorted(walked_ids)
    assert present_at_start <= set(walked_ids), "a record present at the start was missed"
    # Whatever committed after the walk passed by is picked up from its resume cursor, once.
    rest, _ = walk(client, "/reports", app_key="app-one", limit=50, cursor=resume)
    rest_ids = [item["id"] for item in rest]
    assert not set(rest_ids) & set(walked_ids)
    assert sorted(walked_ids + rest_ids) == _all_ids(database)
    assert len(_all_ids(database)) == 120 + WRITERS * BATCHES_PER_WRITER * BATCH


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("export", [False, True], ids=["page", "csv"])
@pytest.mark.parametrize("known", [False, True], ids=["first-read", "horizon-known"])
def test_a_read_waits_for_a_lower_id_still_in_flight(
    client: FlaskClient, database: Database, export: bool, known: bool
) -> None:
    """PostgreSQL can commit id 2 before id 1: neither a page nor a CSV export may cut its
    horizon past the uncommitted 1 (a plain max(id) would, and the export would miss it).
    So too when a horizon below both was read before (`known`): a page reaching above it
    reads a new one, it does not stop at the rows its own snapshot saw."""
    expected = ["slow", "fast"]
    if known:
        store(database, "app-one", [report("before")])
        assert _read(client, export=False) == ["before"]  # the horizon is now "before"'s id
        expected = ["before", *expected]
    slow = database.sessions()
    guard_postgres(slow)
    try:
        raw = RawPayload("app-one", "callback", "SMS_REPORT", "[]")
        ingest(slow, raw, ParsedBatch([report("slow")]))  # takes the lower id, not committed
        store(database, "app-one", [report("fast")])  # takes a higher id and commits first
        with ThreadPoolExecutor(1) as pool:
            read = pool.submit(_read, client, export)
            try:
                _wait_until_blocked_on_a_lock(database)
                slow.commit()
                msg_ids = read.result(timeout=60)
            finally:
                slow.rollback()  # whatever happened, let the read (and the next test) go on
    finally:
        slow.close()

    assert msg_ids == expected


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_page_query_runs_after_the_horizon_lock_is_released(
    client: FlaskClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The horizon's SHARE lock ends with its own statement (autocommit): ingest waits only for
    that statement, never for the page's query after it."""
    store(database, "app-one", [report("a")])
    held: list[bool] = []
    locks = text(
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        "WHERE c.relname = 'delivery_reports' AND l.mode = 'ShareLock' AND l.granted"
    )
    bind = pg_pages.DriverStatement.parameters

    def before_the_page(self: pg_pages.DriverStatement, values: dict[str, object]) -> object:
        # The page's values are bound once the horizon's statement has returned, just before
        # the page's query is sent.
        with database.engine.connect() as other:
            held.append(bool(other.execute(locks).scalar()))
        return bind(self, values)

    monkeypatch.setattr(pg_pages.DriverStatement, "parameters", before_the_page)
    assert get(client, "/reports", app_key="app-one").status_code == 200
    assert held == [False]


def _read(client: FlaskClient, export: bool) -> list[str]:
    """The msg_ids a page or a CSV export of app-one's reports returns."""
    if export:
        response = get(client, "/reports", app_key="app-one", format="csv")
        assert response.status_code == 200
        return [row["msg_id"] for row in csv.DictReader(io.StringIO(response.get_data(True)))]
    body = get(client, "/reports", app_key="app-one").get_json()
    return [item["msg_id"] for item in body["items"]]


def _wait_until_blocked_on_a_lock(database: Database) -> None:
    """Return once some other backend of this database waits on a lock (the read)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    )
    with database.engine.connect() as connection:
        for _ in range(1000):
            if connection.execute(query).scalar():
                return
            connection.rollback()
            threading.Event().wait(0.01)
    raise AssertionError("the read never waited for the in-flight insert")


def test_a_page_reads_one_row_more_than_it_shows_and_an_export_reads_in_chunks(
    store: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the page and export queries ask the database for: `limit + 1` rows (to know whether
    more follow), and the export STREAM_CHUNK rows at a time, never the whole table at once."""
    executed: list[tuple[Select, dict[str, object]]] = []

    def seen(
        conn: object,
        statement: object,
        multiparams: tuple[dict[str, object], ...],
        params: dict[str, object],
        execution_options: object,
    ) -> None:
        if isinstance(statement, Select):
            executed.append((statement, multiparams[0] if multiparams else params))

    read_page = pg_pages.read_page

    def pg_page(connection, horizon, page, values):  # type: ignore[no-untyped-def]
        executed.append((page, values))  # on PostgreSQL psycopg runs the page's statement
        return read_page(connection, horizon, page, values)

    monkeypatch.setattr(pg_pages, "read_page", pg_page)
    # The readers' engine, as the API's pages and exports use (the writers' sends `$n`).
    readers = store.reader_engine
    event.listen(readers, "before_execute", seen)
    try:
        walk_ = lists.report_walk(ReportFilter())
        with readers.connect() as connection:
            lists.fetch_page(connection, walk_, after=0, limit=10)
            lists.fetch_chunk(connection, walk_, after=0, horizon=0)
    finally:
        event.remove(readers, "before_execute", seen)
    # The page's query (after the horizon's) and the export's one chunk: LIMIT, keyset order.
    (page, page_params), (chunk, chunk_params) = executed[-2:]
    assert (page_params["limit"], chunk_params["limit"]) == (11, lists.STREAM_CHUNK)
    assert all("ORDER BY delivery_reports.id" in str(s) for s in (page, chunk))
    assert all(str(s).endswith("LIMIT :limit") for s in (page, chunk))


def test_the_horizon_of_an_empty_table_is_zero(store: Database) -> None:
    """No id is final before the first one commits (a horizon of 1 would let a walk that started
    on an empty table pass id 1 while its insert is still in flight)."""
    with store.engine.connect() as connection:
        assert lists.read_horizon(connection, DeliveryReport) == 0


def test_an_export_stops_at_the_horizon_it_was_given(store: Database) -> None:
    """Rows above the export's horizon (inserted after it began) are not in it."""
    api_data.store(store, "app-one", [report("a"), report("b"), report("c")])
    first, second, _ = _all_ids(store)
    walk_ = lists.report_walk(ReportFilter())
    with store.engine.connect() as connection:
        rows = lists.fetch_chunk(connection, walk_, after=0, horizon=second)
    assert [row.id for row in rows] == [first, second]


def test_a_walk_must_select_its_id_first() -> None:
    """Pages are read positionally (psycopg's tuples on PostgreSQL): the cursor is the first
    column of the last row."""
    columns = (DeliveryReport.msg_id, DeliveryReport.id)
    with pytest.raises(ValueError, match="id first"):
        lists.register(DeliveryReport, columns, lists.REPORT_CONDITIONS)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_ids_past_32_bits_are_paged_alike(client: FlaskClient, database: Database) -> None:
    """A `BIGINT` id past 2**32 (years of receipts, or a sequence set forward) is paged as any
    other: a page below a horizon already read runs without an upper bound, which must be no
    bound at all for such ids, not one that would end the walk early."""
    with database.engine.begin() as connection:
        connection.execute(text("ALTER SEQUENCE delivery_reports_id_seq RESTART WITH 5000000000"))
    store(database, "app-one", [report(f"m{n}") for n in range(3)])
    first = get(client, "/reports", app_key="app-one", limit=2).get_json()
    again = get(client, "/reports", app_key="app-one", limit=2).get_json()  # the horizon known
    assert again == first
    assert [item["msg_id"] for item in first["items"]] == ["m0", "m1"]
    assert min(item["id"] for item in first["items"]) >= 5_000_000_000
    rest = get(client, "/reports", app_key="app-one", cursor=first["next_cursor"]).get_json()
    assert [item["msg_id"] for item in rest["items"]] == ["m2"]
