"""The delivery rollup (migration 0013) is exact: every stats answer and every delivery view
read through it equals the same aggregate over `delivery_reports`, whatever changed the
reports (new, replaced, repeated, reprocessed, purged, deleted by hand), folded or not, rebuilt
or not; and a rebuild while a report is being written loses nothing."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from alembic import command
from flask.testing import FlaskCliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, text
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from app.jsms.client import JsmsClient
from app.jsms.records import parse_payload
from app.pull.clock import build_scheduler, fold_rollup
from app.pull.puller import Puller
from app.pull.state import SyncPolicy
from app.query import stats
from app.query.params import StatsQuery
from app.store import rollup
from app.store.db import Database, make_engine
from app.store.ingest import RawPayload, ingest_many, reprocess
from app.store.models import DeliveryReport, RawEvent, Source
from app.store.retention import RetentionPolicy, purge
from app.store.schema import alembic_config, upgrade_to_head
from app.timezones import bucket_start

APPS = ("app-one", "app-two")
# Two days around a DST change in New York (8 March 2026) and in London (29 March 2026), and
# an ordinary stretch: local midnights, DST hours and quarter-hour zones all fall inside.
BASES = (
    datetime(2026, 3, 7, 12, tzinfo=UTC),
    datetime(2026, 3, 28, 12, tzinfo=UTC),
    datetime(2026, 6, 10, 0, tzinfo=UTC),
)
ZONES = tuple(
    ZoneInfo(name)
    for name in ("UTC", "Asia/Shanghai", "America/New_York", "Asia/Kathmandu", "Europe/London")
)
STATUSES = (4001, 4002, 4004, 4100)
SPAN_MS = 2 * 86_400_000

instants = st.builds(
    lambda base, ms: base + timedelta(milliseconds=ms),
    st.sampled_from(BASES),
    # Mostly whole quarter hours (a bucket's first instant), else anywhere.
    st.one_of(st.integers(0, 192).map(lambda q: q * 900_000), st.integers(0, SPAN_MS)),
)
reports = st.fixed_dictionaries(
    {
        "app": st.sampled_from(APPS),
        "msgId": st.sampled_from(["m1", "m2", "m3", "m4"]),
        "phone": st.sampled_from(["13800000001", "13800000002"]),
        "status": st.sampled_from(STATUSES),
        "at": instants,
    }
)
steps = st.one_of(
    st.tuples(
        st.just("ingest"),
        st.lists(st.lists(reports, min_size=1, max_size=4), min_size=1, max_size=3),
    ),
    st.tuples(st.just("reprocess"), st.lists(reports, min_size=1, max_size=3)),
    st.tuples(st.just("purge"), instants),
    st.tuples(st.just("delete"), st.sampled_from(APPS)),
    st.tuples(st.just("fold"), st.none()),
    st.tuples(st.just("rebuild"), st.none()),
)


def _items(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "msgId": r["msgId"],
            "phone": r["phone"],
            "status": r["status"],
            "receiveTime": int(r["at"].timestamp() * 1000),
        }
        for r in batch
    ]


def _apply(database: Database, step: str, value: Any) -> None:
    """One change to the store, through the service's own code where it has one."""
    with database.session() as session:
        if step == "ingest":  # a group of callbacks in one transaction, as group commit does
            payloads = []
            for n, batch in enumerate(value):
                app = batch[0]["app"]
                data = json.dumps(_items(batch))
                raw = RawPayload(app, Source.CALLBACK, "SMS_REPORT", data, f"n{n}", n)
                payloads.append((raw, parse_payload("SMS_REPORT", json.loads(data))))
            with session.begin():
                ingest_many(session, payloads)
        elif step == "reprocess":  # a quarantined event that today's parser reads
            with session.begin():
                event = RawEvent(
                    app_key=value[0]["app"], source="pull", type="SMS_REPORT",
                    payload=json.dumps(_items(value)), records=len(value), quarantined=len(value),
                )  # fmt: skip
                session.add(event)
                session.flush()
                reprocess(session, event)
        elif step == "purge":  # retention with its cutoff at `value`
            purge(session, RetentionPolicy(0, 1), value + timedelta(days=1))
        elif step == "delete":  # a BI tool's own DELETE
            with session.begin():
                session.execute(
                    text("DELETE FROM delivery_reports WHERE app_key = :a"), {"a": value}
                )
        elif step == "fold":
            with session.begin():
                rollup.fold_changes(session.connection())
    if step == "rebuild":
        rollup.rebuild_rollup(database.engine)


def _stored(session: Session) -> list[tuple[str, int, bool, datetime]]:
    rows = session.execute(
        text("SELECT app_key, status, delivered, received_at FROM delivery_reports")
    )
    return [(a, s, bool(d), _utc(t)) for a, s, d, t in rows]


def _utc(value: Any) -> datetime:
    if isinstance(value, str):  # SQLite: naive UTC text
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _expected_stats(
    rows: list[tuple[str, int, bool, datetime]], query: StatsQuery
) -> list[dict[str, Any]]:
    """The stats answer computed in Python from the reports themselves."""
    buckets: dict[datetime, Counter[int]] = {}
    for app, status, _, at in rows:
        if query.app_key not in (None, app):
            continue
        if (query.since and at < query.since) or (query.until and at >= query.until):
            continue
        buckets.setdefault(bucket_start(at, query.zone, query.bucket), Counter())[status] += 1
    return [stats._bucket_item(s, buckets[s], query.zone) for s in sorted(buckets)]


def _day(connection: Connection, zone: str | None) -> str:
    """A report's day as 0006's views computed it (business zone: Asia/Shanghai, as migrated)."""
    if connection.dialect.name == "postgresql":
        return f"((received_at AT TIME ZONE '{zone or 'UTC'}')::date)"
    return "date(received_at, '+8 hours')" if zone else "date(received_at)"  # UTC+8 since 1991


def _check_views(session: Session) -> None:
    """Each delivery view against 0006's definition over `delivery_reports`."""
    connection = session.connection()
    for suffix, zone in (("", "Asia/Shanghai"), ("_utc", None)):
        day = _day(connection, zone)
        rates = (
            "SELECT app_key, day, total, delivered, failed, delivery_rate"
            f" FROM daily_delivery_rate{suffix} ORDER BY 1, 2"
        )
        rates_oracle = (
            f"SELECT app_key, {day}, count(*), sum(CASE WHEN delivered THEN 1 ELSE 0 END),"
            " sum(CASE WHEN delivered THEN 0 ELSE 1 END),"
            " round(avg(CASE WHEN delivered THEN 1.0 ELSE 0.0 END), 4)"
            f" FROM delivery_reports GROUP BY app_key, {day} ORDER BY 1, 2"
        )
        assert _all(connection, rates) == _all(connection, rates_oracle)
        failures = (
            "SELECT app_key, day, status, status_text, failures"
            f" FROM failures_by_status{suffix} ORDER BY 1, 2, 3"
        )
        failures_oracle = (
            f"SELECT app_key, {day}, status, count(*) FROM delivery_reports"
            f" WHERE NOT delivered GROUP BY app_key, {day}, status ORDER BY 1, 2, 3"
        )
        got = _all(connection, failures)
        assert [r[:3] + r[4:] for r in got] == _all(connection, failures_oracle)
        assert all(r[3] for r in got)  # every failing status is named


def _all(connection: Connection, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in connection.execute(text(sql))]


def _folded_rollup_is_the_reports(session: Session) -> None:
    """After a fold, the rollup table alone holds exactly the reports' counts."""
    with session.begin():
        rollup.fold_changes(session.connection())
    got = {
        (a, b, s, bool(d)): n
        for a, b, s, d, n in session.execute(
            text("SELECT app_key, bucket, status, delivered, reports FROM delivery_rollup")
        )
    }
    want: Counter[tuple[str, int, int, bool]] = Counter()
    for app, status, delivered, at in _stored(session):
        want[(app, int(at.timestamp()) // 900 * 900, status, delivered)] += 1
    assert got == dict(want)
    assert session.scalar(text("SELECT count(*) FROM delivery_rollup_changes")) == 0
    session.commit()


def _empty(database: Database) -> None:
    with database.session() as session, session.begin():
        for table in (
            "delivery_reports",
            "raw_events",
            "delivery_rollup_changes",
            "delivery_rollup",
        ):
            session.execute(text(f"DELETE FROM {table}"))


def _near(rows: list[tuple[str, int, bool, datetime]]) -> st.SearchStrategy[datetime | None]:
    """No bound, any instant, or one within 20 minutes of a stored report (so an edge that cuts
    a bucket holds reports)."""
    times = [at for *_, at in rows] or [BASES[0]]
    nearby = st.builds(
        lambda at, ms: at + timedelta(milliseconds=ms),
        st.sampled_from(times),
        st.integers(-1_200_000, 1_200_000),
    )
    return st.one_of(st.none(), instants, nearby, st.sampled_from(times))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=st.lists(steps, min_size=1, max_size=8), data=st.data())
def test_every_answer_through_the_rollup_equals_the_reports(
    store: Database, plan: list[tuple[str, Any]], data: st.DataObject
) -> None:
    _empty(store)
    for step, value in plan:
        _apply(store, step, value)
    with store.session() as session:
        rows = _stored(session)
        for _ in range(3):
            app_key = data.draw(st.sampled_from((None, *APPS)))
            since, until = data.draw(_near(rows)), data.draw(_near(rows))
            for zone in ZONES:
                for bucket in ("hour", "day"):
                    query = StatsQuery(app_key, since, until, bucket, zone)
                    assert stats.delivery_stats(session, query) == _expected_stats(rows, query)
        _check_views(session)
        session.rollback()
        _folded_rollup_is_the_reports(session)


def _ingest_one(session: Session, msg_id: str, at: datetime, status: int = 4001) -> None:
    item = {"app": APPS[0], "msgId": msg_id, "phone": "13800000001", "status": status, "at": at}
    data = json.dumps(_items([item]))
    raw = RawPayload(APPS[0], Source.CALLBACK, "SMS_REPORT", data, msg_id, 1)
    ingest_many(session, [(raw, parse_payload("SMS_REPORT", json.loads(data)))])


def test_a_rebuild_while_a_report_is_being_written_counts_it_once(
    store: Database, database_url: str
) -> None:
    _empty(store)
    with store.session() as session, session.begin():
        _ingest_one(session, "before", BASES[0])
    writer = store.sessions()
    writer.begin()
    _ingest_one(writer, "during", BASES[0] + timedelta(minutes=1), status=4004)
    if database_url.startswith("postgresql"):
        # The writer commits after the rebuild's snapshot, just before it counts the reports:
        # the count must not see the report, and its pending change is left for the next fold.
        def commit_the_writer(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if statement.startswith("INSERT INTO delivery_rollup (") and writer.in_transaction():
                writer.commit()

        sa_event.listen(store.engine, "before_cursor_execute", commit_the_writer)
        try:
            rollup.rebuild_rollup(store.engine)  # and it never waited for the writer
        finally:
            sa_event.remove(store.engine, "before_cursor_execute", commit_the_writer)
        assert not writer.in_transaction()
    else:  # the one write lock: the rebuild waits for the writer to commit
        rebuilt = threading.Thread(target=rollup.rebuild_rollup, args=(store.engine,))
        rebuilt.start()
        writer.commit()
        rebuilt.join(60)
        assert not rebuilt.is_alive()
    writer.close()
    with store.session() as session:
        query = StatsQuery(None, None, None, "day", ZoneInfo("UTC"))
        [day] = stats.delivery_stats(session, query)
        assert day["by_status"] == {"4001": 1, "4004": 1}
        session.rollback()
        _folded_rollup_is_the_reports(session)


def test_rebuild_stats_recounts_a_rollup_gone_wrong(
    runner: FlaskCliRunner, database: Database
) -> None:
    with database.session() as session, session.begin():
        _ingest_one(session, "m1", BASES[0])
        _ingest_one(session, "m2", BASES[1], status=4002)
        rollup.fold_changes(session.connection())
        session.execute(text("UPDATE delivery_rollup SET reports = 7"))
    result = runner.invoke(args=["jsms", "rebuild-stats"])
    assert result.exit_code == 0, result.output
    assert "delivery rollup rebuilt from delivery_reports: 2 rows" in result.output
    with database.session() as session:
        query = StatsQuery(None, None, None, "day", ZoneInfo("UTC"))
        assert [d["total"] for d in stats.delivery_stats(session, query)] == [1, 1]


def test_the_clock_folds_pending_changes_into_the_rollup(
    database: Database, tmp_path: Path
) -> None:
    with database.session() as session, session.begin():
        _ingest_one(session, "m1", BASES[0])
    with JsmsClient("http://127.0.0.1:9") as upstream:
        puller = Puller(database, upstream, SyncPolicy(), spool=tmp_path)
        assert "rollup" in {job.id for job in build_scheduler(puller).get_jobs()}
        fold_rollup(puller)
    with database.session() as session:
        assert session.scalar(text("SELECT count(*) FROM delivery_rollup_changes")) == 0
        assert session.scalar(text("SELECT sum(reports) FROM delivery_rollup")) == 1


def test_the_migration_counts_the_reports_stored_before_it(database_url: str) -> None:
    rows = [
        {"msg_id": f"m{n}", "status": status, "delivered": status == 4001, "received_at": at}
        for n, (status, at) in enumerate(
            [(4001, BASES[0]), (4001, BASES[0] + timedelta(minutes=3)), (4004, BASES[1])]
        )
    ]
    config = alembic_config(database_url)
    engine = make_engine(database_url)
    try:
        command.downgrade(config, "0012")
        with engine.begin() as connection:
            connection.execute(
                DeliveryReport.__table__.insert(),
                [
                    row | {"app_key": APPS[0], "phone": "13800000001", "source": "pull",
                           "ingested_at": BASES[2]}
                    for row in rows
                ],
            )  # fmt: skip
    finally:
        upgrade_to_head(database_url)
        engine.dispose()
    database = Database(database_url)
    try:
        with database.session() as session:
            assert session.scalar(text("SELECT count(*) FROM delivery_rollup_changes")) == 0
            counted = session.execute(text("SELECT bucket, reports FROM delivery_rollup"))
            by_bucket = {bucket: reports for bucket, reports in counted}
            assert by_bucket == {
                int(BASES[0].timestamp()): 2,
                int(BASES[1].timestamp()): 1,
            }
            _check_views(session)
    finally:
        database.engine.dispose()
