"""The one write path's guarantees, on SQLite and PostgreSQL: what `ingest` stores and counts."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import psycopg
import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from app.jsms.records import parse_payload
from app.store import db
from app.store.db import Database
from app.store.ingest import IngestResult, RawPayload, ingest
from app.store.models import DeliveryReport, RawEvent, Reply, ReviewResult
from tests.support import ADMIN_URL, APPS, row_count
from tests.wire import report, signed_form


def run(database: Database, record_type: str, data: object, source: str = "pull") -> IngestResult:
    """Ingest one payload in its own transaction, committed."""
    raw = RawPayload("app-one", source, record_type, str(data), None, None)
    with database.session() as session:
        result = ingest(session, raw, parse_payload(record_type, data))
        session.commit()
    return result


def test_reports_are_stored_with_their_raw_event(database: Database) -> None:
    result = run(database, "SMS_REPORT", [report("m1"), report("m2", status=4003)])
    assert (result.stored, result.duplicates, result.quarantined) == (2, 0, 0)
    with database.session() as session:
        event = session.get(RawEvent, result.raw_event_id)
        assert event is not None
        assert (event.records, event.stored, event.duplicates, event.quarantined) == (2, 2, 0, 0)
        rows = session.scalars(select(DeliveryReport).order_by(DeliveryReport.msg_id)).all()
    assert [(r.msg_id, r.status, r.delivered, r.source) for r in rows] == [
        ("m1", 4001, True, "pull"),
        ("m2", 4003, False, "pull"),
    ]
    assert {r.raw_event_id for r in rows} == {result.raw_event_id}
    assert rows[0].received_at == datetime.fromtimestamp(1575015093, UTC)


def test_a_repeat_is_a_duplicate_and_still_kept_raw(database: Database) -> None:
    first = run(database, "SMS_REPORT", [report("m1")])
    again = run(database, "SMS_REPORT", [report("m1")])
    assert (again.stored, again.duplicates) == (0, 1)
    assert row_count(database, DeliveryReport) == 1
    assert row_count(database, RawEvent) == 2
    with database.session() as session:
        event = session.get(RawEvent, again.raw_event_id)
        assert event is not None and (event.stored, event.duplicates) == (0, 1)
        stored = session.scalars(select(DeliveryReport)).one()
    assert stored.raw_event_id == first.raw_event_id


def test_a_later_status_replaces_an_earlier_one_and_not_the_reverse(database: Database) -> None:
    run(database, "SMS_REPORT", [report("m1", status=4003, receive_time=1575015093000)])
    later = run(database, "SMS_REPORT", [report("m1", status=4001, receive_time=1575015099000)])
    earlier = run(database, "SMS_REPORT", [report("m1", status=4004, receive_time=1575015000000)])
    assert (later.stored, later.duplicates) == (1, 0)
    # Not a repeat: kept in its raw event and counted stored, but the newer row stays.
    assert (earlier.stored, earlier.duplicates) == (1, 0)
    with database.session() as session:
        stored = session.scalars(select(DeliveryReport)).one()
    assert (stored.status, stored.delivered) == (4001, True)
    assert stored.raw_event_id == later.raw_event_id


def test_the_same_report_twice_in_one_batch_keeps_the_latest(database: Database) -> None:
    result = run(
        database,
        "SMS_REPORT",
        [report("m1", status=4001, receive_time=1575015099000), report("m1", status=4003)],
    )
    assert (result.stored, result.duplicates) == (2, 0)  # two different reports, no repeat
    with database.session() as session:
        assert session.scalars(select(DeliveryReport.status)).one() == 4001


SAME_TIME = 1575015093000
FAILED = report("m1", status=4003, receive_time=SAME_TIME)
DELIVERED = report("m1", status=4001, receive_time=SAME_TIME)
ALSO_FAILED = report("m1", status=4004, receive_time=SAME_TIME)


def stored_row(database: Database) -> DeliveryReport:
    with database.session() as session:
        return session.scalars(select(DeliveryReport)).one()


@pytest.mark.parametrize(
    "arrivals",
    [(FAILED, DELIVERED), (DELIVERED, FAILED), (FAILED, ALSO_FAILED, DELIVERED)],
    ids=["failure-first", "delivered-first", "two-failures-first"],
)
def test_at_the_same_time_delivered_wins_whatever_the_arrival_order(
    database: Database, arrivals: tuple[dict, ...]
) -> None:
    results = [run(database, "SMS_REPORT", [item]) for item in arrivals]
    # Each arrival was a different report: stored (changing the row or not), never a duplicate.
    assert [(r.stored, r.duplicates) for r in results] == [(1, 0)] * len(arrivals)
    row = stored_row(database)
    assert (row.status, row.delivered) == (4001, True)
    assert row.raw_event_id == results[arrivals.index(DELIVERED)].raw_event_id
    # Only an identical repeat is a duplicate, and it changes nothing.
    for item in arrivals:
        repeat = run(database, "SMS_REPORT", [item])
        assert (repeat.stored, repeat.duplicates) == ((1, 0) if item is not DELIVERED else (0, 1))
    assert stored_row(database).raw_event_id == results[arrivals.index(DELIVERED)].raw_event_id


@pytest.mark.parametrize("first", [FAILED, ALSO_FAILED])
def test_two_failures_at_the_same_time_keep_the_higher_code_in_any_order(
    database: Database, first: dict
) -> None:
    run(database, "SMS_REPORT", [first])
    run(database, "SMS_REPORT", [ALSO_FAILED if first is FAILED else FAILED])
    assert stored_row(database).status == 4004


@pytest.mark.parametrize(
    "batch",
    [
        [FAILED, DELIVERED, FAILED],
        [DELIVERED, FAILED, DELIVERED],
        [ALSO_FAILED, DELIVERED, FAILED],
        [DELIVERED, ALSO_FAILED],
    ],
)
def test_in_one_batch_the_same_rule_applies(database: Database, batch: list[dict]) -> None:
    result = run(database, "SMS_REPORT", batch)
    assert stored_row(database).status == 4001
    repeats = len(batch) - len({item["status"] for item in batch})
    assert (result.stored, result.duplicates) == (len(batch) - repeats, repeats)
    with database.session() as session:
        event = session.get(RawEvent, result.raw_event_id)
        assert event is not None
        assert event.records == event.stored + event.duplicates + event.quarantined


def test_a_large_batch_is_stored_whole(database: Database) -> None:
    items = [report(f"m{i}", phone=f"1380013{i:04d}") for i in range(1200)]
    result = run(database, "SMS_REPORT", items + [report("m7", phone="13800130007")])
    assert (result.stored, result.duplicates) == (1200, 1)
    assert row_count(database, DeliveryReport) == 1200


def test_unnormalizable_records_are_quarantined_with_the_reason(database: Database) -> None:
    result = run(database, "SMS_REPORT", [report("m1"), {"msgId": "m2"}, "nonsense"])
    assert (result.stored, result.duplicates, result.quarantined) == (1, 0, 2)
    with database.session() as session:
        event = session.get(RawEvent, result.raw_event_id)
    assert event is not None and event.quarantine_reason is not None
    assert event.quarantine_reason.startswith("#1: ") and "#2: " in event.quarantine_reason
    assert (event.records, event.stored, event.quarantined) == (3, 1, 2)


def test_an_unknown_type_is_kept_raw_and_quarantined(database: Database) -> None:
    result = run(database, "SMS_SOMETHING", {"x": 1}, source="callback")
    assert (result.stored, result.duplicates, result.quarantined) == (0, 0, 1)
    with database.session() as session:
        event = session.get(RawEvent, result.raw_event_id)
    assert event is not None and event.type == "SMS_SOMETHING" and event.source == "callback"


def test_replies_and_reviews_collapse_repeats(database: Database) -> None:
    reply = {"phone": "13800138000", "replyTime": 1575015093000, "content": "TD", "x": 1}
    assert run(database, "SMS_REPLY", [reply, reply]).stored == 1
    assert run(database, "SMS_REPLY", [reply]).duplicates == 1
    review = {"tempId": "7", "status": 2, "refuseReason": "no"}
    assert run(database, "SMS_TEMPLATE", review).stored == 1
    assert run(database, "SMS_TEMPLATE", review).stored == 0
    assert (row_count(database, Reply), row_count(database, ReviewResult)) == (1, 1)


def sha256_of(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def test_the_dedup_keys_a_release_stores_never_change(database: Database) -> None:
    """Stored replies and review results are found again by their dedup key: a key made of
    other parts after an upgrade would store every JSMS retry of an earlier row again."""
    reply = {"phone": "13800138000", "replyTime": 1575015093000, "content": "TD"}
    run(database, "SMS_REPLY", [reply])
    run(database, "SMS_TEMPLATE", {"tempId": "7", "status": 2, "refuseReason": "no"})
    run(database, "SMS_SIGN", {"signId": "9", "status": 1})  # no refuseReason: ""
    with database.session() as session:
        replies = set(session.scalars(select(Reply.dedup_key)))
        reviews = set(session.scalars(select(ReviewResult.dedup_key)))
    assert replies == {sha256_of("app-one", "13800138000", "2019-11-29T08:11:33+00:00", "TD")}
    assert reviews == {
        sha256_of("app-one", "template", "7", "2", "no"),
        sha256_of("app-one", "sign", "9", "1", ""),
    }


def test_a_callback_answered_200_is_committed(client: FlaskClient, database: Database) -> None:
    form = signed_form("app-two", APPS["app-two"], "SMS_REPORT", report("m1"))
    answer = client.post("/callbacks/jsms", data=form)
    assert answer.status_code == 200
    assert answer.json == {"stored": 1, "duplicates": 0, "quarantined": 0}
    again = client.post("/callbacks/jsms/app-two", data=form)
    assert again.json == {"stored": 0, "duplicates": 1, "quarantined": 0}
    # Read through a connection of its own: what 200 promised must already be committed.
    other = Database(database.url)
    with other.session() as session:
        assert session.scalar(select(func.count()).select_from(DeliveryReport)) == 1
        events = session.scalars(select(RawEvent).order_by(RawEvent.id)).all()
    other.engine.dispose()
    # The repeat is JSMS retrying the same signed callback: answered, not stored again.
    assert [(e.app_key, e.nonce, e.stored, e.duplicates) for e in events] == [
        ("app-two", form["nonce"], 1, 0),
    ]
    assert events[0].callback_timestamp == int(form["timestamp"])


@pytest.mark.postgres
def test_a_pooled_connection_that_died_while_idle_is_replaced(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)
    database = Database(postgres_database)
    with database.engine.connect() as connection:
        backend = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
    with database.engine.connect() as connection:
        assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() != backend
    database.engine.dispose()
