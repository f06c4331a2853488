"""Nothing a record holds can cost a receipt: raw first, one bad record isolated, on both ways in.

Property tests drive signed callbacks over HTTP and pulled batches through the fake JSMS with
records whose fields hold any JSON value; fault tests make the normalizer and the store raise
what nobody foresaw. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.jsms import records
from app.jsms.client import JsmsClient
from app.pull.puller import Puller
from app.pull.state import SyncPolicy
from app.store import upsert
from app.store.db import Database
from app.store.models import DeliveryReport, RawEvent, Reply, ReviewResult
from tests.fake_jsms import FakeJsms
from tests.strategies import VALID, mixed_items
from tests.support import APPS, FAKE_WINDOW, failing_statements, throwaway_spool
from tests.wire import report, signed_form

APP, SECRET = "app-one", APPS["app-one"]
PROPERTIES = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def puller(fake_jsms: FakeJsms, store: Database) -> Iterator[Puller]:
    with JsmsClient(fake_jsms.url) as client:
        yield Puller(store, client, SyncPolicy(window=FAKE_WINDOW), spool=throwaway_spool())


def latest_event(database: Database) -> RawEvent:
    with database.session() as session:
        event_ = session.scalars(select(RawEvent).order_by(RawEvent.id.desc()).limit(1)).one()
    return event_


def events(database: Database) -> int:
    with database.session() as session:
        return int(session.scalar(select(func.count()).select_from(RawEvent)) or 0)


def assert_accounted(event_: RawEvent, items: int) -> None:
    """Every item of the payload is stored, a duplicate or quarantined: none is missing."""
    assert event_.records == items
    assert event_.records == event_.stored + event_.duplicates + event_.quarantined


def assert_stored(database: Database, record_type: str, item: dict[str, Any]) -> None:
    """A valid record is in its table (perhaps replaced since by one that ranks higher)."""
    with database.session() as session:
        if record_type == "SMS_REPORT":
            found = session.scalar(
                select(func.count())
                .select_from(DeliveryReport)
                .where(
                    DeliveryReport.app_key == APP,
                    DeliveryReport.msg_id == str(item["msgId"]),
                    DeliveryReport.phone == str(item["phone"]),
                )
            )
        elif record_type == "SMS_REPLY":
            found = session.scalar(
                select(func.count())
                .select_from(Reply)
                .where(
                    Reply.app_key == APP,
                    Reply.phone == str(item["phone"]),
                    Reply.content == item["content"],
                )
            )
        else:
            subject = item.get("tempId", item.get("signId"))
            found = session.scalar(
                select(func.count())
                .select_from(ReviewResult)
                .where(ReviewResult.subject_id == str(subject))
            )
    assert found, f"a valid {record_type} record was not stored: {item!r}"


# --- properties ----------------------------------------------------------------------------


@PROPERTIES
@given(data=st.data())
def test_a_signed_callback_keeps_every_item_whatever_it_holds(
    client: FlaskClient, database: Database, data: st.DataObject
) -> None:
    record_type = data.draw(st.sampled_from(sorted(VALID)), "type")
    tagged = data.draw(mixed_items(record_type), "items")
    items = [item for _, item in tagged]
    # One item may be sent bare, unless it is itself a list (that would be another batch).
    single = (
        len(items) == 1
        and not isinstance(items[0], list)
        and data.draw(st.booleans(), "one object, not a list")
    )
    text = json.dumps(items[0] if single else items)

    response = client.post("/callbacks/jsms", data=signed_form(APP, SECRET, record_type, text))

    assert response.status_code == 200, response.get_data(as_text=True)
    counts = response.get_json()
    event_ = latest_event(database)
    assert event_.payload == text  # the raw text, kept as it came
    assert_accounted(event_, len(items))
    assert counts == {
        "stored": event_.stored,
        "duplicates": event_.duplicates,
        "quarantined": event_.quarantined,
    }
    for valid, item in tagged:
        if valid:
            assert_stored(database, record_type, item)


@PROPERTIES
@given(data=st.data())
def test_a_pulled_batch_is_stored_or_quarantined_never_lost(
    fake_jsms: FakeJsms, puller: Puller, store: Database, data: st.DataObject
) -> None:
    kind = data.draw(st.sampled_from(["report", "reply"]), "kind")
    record_type = "SMS_REPORT" if kind == "report" else "SMS_REPLY"
    tagged = data.draw(mixed_items(record_type, max_size=8), "items")
    items = [item for _, item in tagged]
    before = events(store)
    fake_jsms.add(APP, kind, items)

    [result] = puller.sync_app(APP, SECRET, [kind])

    assert result.outcome == "drained" and fake_jsms.pending(APP, kind) == 0
    assert result.items == len(items)
    if not items:  # `[]` handed out nothing: no raw event for it
        assert events(store) == before
        return
    event_ = latest_event(store)
    assert event_.source == "pull" and event_.payload == json.dumps(items)
    assert_accounted(event_, len(items))
    assert (result.stored, result.duplicates, result.quarantined) == (
        event_.stored,
        event_.duplicates,
        event_.quarantined,
    )
    for valid, item in tagged:
        if valid:
            assert_stored(store, record_type, item)


# --- faults nobody foresaw -----------------------------------------------------------------


class Unforeseen(Exception):
    """An exception type no code in the service names."""


ITEMS = [report("before"), report("boom"), report("after")]


@pytest.fixture
def exploding_normalizer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The report normalizer raises `Unforeseen` for msgId `boom`."""
    normalize = records._PARSERS["SMS_REPORT"]

    def parse(item: dict[str, Any], now: Any) -> records.Record:
        if item.get("msgId") == "boom":
            raise Unforeseen("the normalizer met something new")
        return normalize(item, now)

    monkeypatch.setitem(records._PARSERS, "SMS_REPORT", parse)


def stored_msg_ids(database: Database) -> list[str]:
    with database.session() as session:
        return sorted(session.scalars(select(DeliveryReport.msg_id)))


@pytest.mark.usefixtures("exploding_normalizer")
def test_a_callback_survives_a_normalizer_exception_and_stores_the_neighbours(
    client: FlaskClient, database: Database
) -> None:
    form = signed_form(APP, SECRET, "SMS_REPORT", ITEMS)
    response = client.post("/callbacks/jsms", data=form)
    assert response.status_code == 200
    assert response.get_json() == {"stored": 2, "duplicates": 0, "quarantined": 1}
    event_ = latest_event(database)
    assert event_.payload == form["data"] and event_.quarantine_reason == (
        "#1: unexpected Unforeseen: the normalizer met something new"
    )
    assert stored_msg_ids(database) == ["after", "before"]


@pytest.mark.usefixtures("exploding_normalizer")
def test_a_pull_survives_a_normalizer_exception_and_stores_the_neighbours(
    fake_jsms: FakeJsms, puller: Puller, store: Database
) -> None:
    fake_jsms.add(APP, "report", ITEMS)
    [result] = puller.sync_app(APP, SECRET, ["report"])
    assert (result.outcome, result.stored, result.quarantined) == ("drained", 2, 1)
    event_ = latest_event(store)
    assert json.loads(event_.payload) == ITEMS and "Unforeseen" in (event_.quarantine_reason or "")
    assert stored_msg_ids(store) == ["after", "before"]


@pytest.fixture(params=["database refuses a value", "python raises in the store"])
def store_refuses_reports(
    request: pytest.FixtureRequest, database: Database, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Writing reports fails, but the database is up: a constraint, or code nobody foresaw."""
    if request.param == "python raises in the store":

        def store_reports(connection: object, owners: list[object], owned: list[object]) -> int:
            raise Unforeseen("the store met something new")

        monkeypatch.setattr(upsert, "store_reports", store_reports)
        yield
        return

    with failing_statements(database.engine, "INSERT INTO delivery_reports", IntegrityError):
        yield


@pytest.mark.usefixtures("store_refuses_reports")
def test_a_callback_whose_records_the_store_refuses_is_kept_raw_and_quarantined(
    client: FlaskClient, database: Database
) -> None:
    form = signed_form(APP, SECRET, "SMS_REPORT", ITEMS + ["not an object"])
    response = client.post("/callbacks/jsms", data=form)
    assert response.status_code == 200
    assert response.get_json() == {"stored": 0, "duplicates": 0, "quarantined": 4}
    event_ = latest_event(database)
    assert event_.payload == form["data"]
    assert_accounted(event_, 4)
    reasons = (event_.quarantine_reason or "").splitlines()
    assert reasons[0] in {
        "3 records could not be stored (IntegrityError): the payload is kept raw",
        "3 records could not be stored (Unforeseen): the payload is kept raw",
    }
    assert reasons[1].startswith("#3:")
    assert stored_msg_ids(database) == []


@pytest.mark.usefixtures("store_refuses_reports")
def test_a_pulled_batch_whose_records_the_store_refuses_is_kept_raw_and_quarantined(
    fake_jsms: FakeJsms, app: Any, database: Database
) -> None:
    fake_jsms.add(APP, "report", ITEMS)
    with JsmsClient(fake_jsms.url) as client:
        puller = Puller(database, client, SyncPolicy(window=FAKE_WINDOW), spool=throwaway_spool())
        [result] = puller.sync_app(APP, SECRET, ["report"])
    assert (result.outcome, result.stored, result.quarantined) == ("drained", 0, 3)
    event_ = latest_event(database)
    assert json.loads(event_.payload) == ITEMS
    assert_accounted(event_, 3)


# --- the cases, as a user met them -------------------------------------------------


def test_a_time_no_calendar_can_hold_costs_only_its_own_record(
    fake_jsms: FakeJsms, puller: Puller, store: Database, client: FlaskClient
) -> None:
    odd = report("odd", receive_time="9999-12-31T23:59:59-05:00")
    batch = [report(f"m{i:03d}") for i in range(499)] + [odd]
    fake_jsms.add(APP, "report", batch)
    [result] = puller.sync_app(APP, SECRET, ["report"])
    assert (result.outcome, result.stored, result.quarantined) == ("drained", 499, 1)
    assert "out of range" in (latest_event(store).quarantine_reason or "")

    form = signed_form(APP, SECRET, "SMS_REPORT", [report("cb"), odd])
    response = client.post("/callbacks/jsms", data=form)
    assert response.get_json() == {"stored": 1, "duplicates": 0, "quarantined": 1}


def test_extra_fields_nested_too_deep_to_encode_are_quarantined_not_500(
    client: FlaskClient, database: Database
) -> None:
    """Near the recursion limit, `json` reads a document that it cannot write back. Where exactly
    depends on the stack, so walk the depths: every answer is 200 (the callback kept whole,
    unread, when `data` itself is too deep to read), and at some depth the record is
    quarantined for it."""
    reasons = []
    for depth in range(900, 1000, 4):
        nested = "[" * depth + "]" * depth
        neighbour = f'{{"phone":"1390000{depth:04d}","content":"ok","replyTime":1492150741392}}'
        data = (
            f'[{{"phone":"13800138000","content":"d{depth}","replyTime":1492150741392,'
            f'"x":{nested}}},{neighbour}]'
        )
        response = client.post("/callbacks/jsms", data=signed_form(APP, SECRET, "SMS_REPLY", data))
        assert response.status_code == 200
        if "nested deeper" in (latest_event(database).quarantine_reason or ""):
            assert response.get_json() == {"stored": 0, "duplicates": 0, "quarantined": 1}
            continue
        assert response.get_json()["stored"] + response.get_json()["quarantined"] == 2
        reasons.append(latest_event(database).quarantine_reason or "")
    assert any("RecursionError" in reason for reason in reasons)
    with database.session() as session:
        neighbours = session.scalar(
            select(func.count()).select_from(Reply).where(Reply.content == "ok")
        )
    assert neighbours == len(reasons)


@pytest.mark.parametrize("body", ["", "   ", "\r\n\t "])
def test_an_empty_pulled_body_is_an_empty_batch(
    fake_jsms: FakeJsms, puller: Puller, store: Database, body: str
) -> None:
    fake_jsms.add_body(APP, "report", body)
    [result] = puller.sync_app(APP, SECRET, ["report"])
    assert (result.outcome, result.calls, result.items) == ("drained", 1, 0)
    assert events(store) == 0
    assert fake_jsms.calls_with(None, APP)[-1].status == 200


def test_a_byte_order_mark_before_the_json_is_read_past(
    fake_jsms: FakeJsms, puller: Puller, store: Database
) -> None:
    fake_jsms.add_body(APP, "report", "\ufeff" + json.dumps([report("bom")]))
    [result] = puller.sync_app(APP, SECRET, ["report"])
    assert (result.stored, result.quarantined) == (1, 0)
    assert stored_msg_ids(store) == ["bom"]
