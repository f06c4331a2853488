"""`jsms reprocess`: quarantined raw events normalized again after an upgrade, idempotently."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.jsms import records
from app.store.db import Database
from app.store.ingest import IngestResult, reprocess
from app.store.models import DeliveryReport, RawEvent
from tests.support import APPS, failing_statements
from tests.wire import report, signed_form


def stored(database: Database) -> list[DeliveryReport]:
    with database.session() as session:
        return list(session.scalars(select(DeliveryReport).order_by(DeliveryReport.id)))


def test_reprocess_recovers_what_a_fixed_parser_can_read(
    client: FlaskClient,
    runner: FlaskCliRunner,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    items = [report("m1"), report("m2", status=4004) | {"status": "4004 "}, {"junk": 1}]
    # Today's parser cannot read "SMS_REPORT_V2"; a later release learns that it is a report.
    form = signed_form("app-one", APPS["app-one"], "SMS_REPORT_V2", items)
    assert client.post("/callbacks/jsms", data=form).get_json()["quarantined"] == 3

    monkeypatch.setitem(records._PARSERS, "SMS_REPORT_V2", records._parse_report)
    first = runner.invoke(args=["jsms", "reprocess"])
    assert first.exit_code == 0, first.output
    assert "1 quarantined raw events: 2 records stored, 1 still quarantined" in first.output

    again = runner.invoke(args=["jsms", "reprocess"])
    assert "2 records stored" not in again.output and "0 records stored" in again.output
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(DeliveryReport)) == 2
        [event] = session.scalars(select(RawEvent)).all()
    assert (event.records, event.stored, event.duplicates, event.quarantined) == (3, 2, 0, 1)
    assert event.quarantine_reason and event.quarantine_reason.startswith("#2:")


def test_reprocess_with_nothing_quarantined(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["jsms", "reprocess"])
    assert result.exit_code == 0 and "reprocessed 0 quarantined raw events" in result.output


def test_a_batch_the_store_cannot_take_is_spooled_then_stored_by_reprocess(
    app, database: Database, fake_jsms, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from app.jsms.client import JsmsClient
    from app.pull import puller as sync
    from app.pull.puller import BatchNotStored, Puller
    from app.pull.state import SyncPolicy
    from tests.support import FAKE_WINDOW

    monkeypatch.setattr(sync, "STORE_RETRY_SECONDS", 0.3)
    fake_jsms.add_reports("app-one", 30)

    gone = failing_statements(database.engine, "INSERT INTO raw_events")
    with gone, JsmsClient(fake_jsms.url) as jsms:
        puller = Puller(database, jsms, SyncPolicy(window=FAKE_WINDOW), spool=tmp_path / "unstored")
        with pytest.raises(BatchNotStored):
            puller.sync_app("app-one", APPS["app-one"], ["report"])
    assert fake_jsms.pending("app-one", "report") == 0  # handed out: the spool is the only copy
    assert len(list((tmp_path / "unstored").glob("*.json"))) == 1

    app.instance_path = str(tmp_path)
    result = app.test_cli_runner().invoke(args=["jsms", "reprocess"])
    assert result.exit_code == 0, result.output
    assert "stored spooled batch" in result.output
    assert list((tmp_path / "unstored").glob("*.json")) == []
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(DeliveryReport)) == 30
        [raw] = session.scalars(select(RawEvent)).all()
    assert raw.source == "pull" and raw.records == 30


def quarantined_event(database: Database, payload: object, reason: str, items: int) -> None:
    """A raw event as an older release left it: every item quarantined."""
    with database.session() as session:
        session.add(
            RawEvent(
                app_key="app-one",
                source="pull",
                type="SMS_REPORT",
                payload=json.dumps(payload),
                records=items,
                quarantined=items,
                quarantine_reason=reason,
            )
        )
        session.commit()


def test_an_old_quarantined_compact_time_becomes_a_record(
    runner: FlaskCliRunner, database: Database
) -> None:
    # Before this release `20170414141901` was read as an epoch (the year 2609) and refused.
    old = [report("m1", receive_time="20170414141901"), report("m2", receive_time=0)]
    quarantined_event(database, old, "#0: time 20170414141901 is out of range\n#1: …", 2)
    result = runner.invoke(args=["jsms", "reprocess"])
    assert "1 records stored, 1 still quarantined" in result.output, result.output
    [row] = stored(database)
    assert (row.msg_id, row.received_at) == ("m1", datetime(2017, 4, 14, 6, 19, 1, tzinfo=UTC))
    with database.session() as session:
        [event] = session.scalars(select(RawEvent)).all()
    assert (event.records, event.stored, event.duplicates, event.quarantined) == (2, 1, 0, 1)
    assert (event.quarantine_reason or "").startswith("#1: receiveTime: implausible time")


def test_an_event_quarantined_whole_is_read_item_by_item(
    client: FlaskClient, runner: FlaskCliRunner, database: Database
) -> None:
    """A callback over the bound, and a batch the store once refused: reprocess reads them all."""
    items = [report(f"m{i}") for i in range(1001)]
    form = signed_form("app-one", APPS["app-one"], "SMS_REPORT", items)
    assert client.post("/callbacks/jsms", data=form).get_json()["quarantined"] == 1001
    quarantined_event(database, items[:3] + [{"junk": 1}], "the batch could not be stored", 1)

    result = runner.invoke(args=["jsms", "reprocess"])
    assert "2 quarantined raw events: 1001 records stored, 1 still quarantined" in result.output
    assert len(stored(database)) == 1001
    with database.session() as session:
        events = session.scalars(select(RawEvent).order_by(RawEvent.id)).all()
    assert [(e.records, e.stored, e.duplicates, e.quarantined) for e in events] == [
        (1001, 1001, 0, 0),
        (4, 0, 3, 1),  # its reports were stored by the callback first
    ]
    for event in events:
        assert event.records == event.stored + event.duplicates + event.quarantined


def kept_whole(store: Database, payload: str) -> int:
    """A raw event kept whole and quarantined (as an older release left it); its id."""
    with store.session() as session, session.begin():
        event_ = RawEvent(app_key="app-one", source="pull", type="SMS_REPORT", payload=payload,
                          received_at=datetime.now(UTC), records=2, stored=0, duplicates=0,
                          quarantined=2, quarantine_reason="kept whole")  # fmt: skip
        session.add(event_)
        session.flush()
        return event_.id


def test_reprocess_returns_what_it_did_to_each_event(store: Database) -> None:
    """Stored records name the event they came from; an event nobody can read yet, or whose
    records the store still refuses, comes back unchanged, and says so."""
    readable = kept_whole(store, json.dumps([report("m1"), {"junk": 1}]))
    not_json = kept_whole(store, "{not json")
    refused = kept_whole(store, json.dumps([report("m2")]))

    results = {}
    m2_refused = failing_statements(
        store.engine, "INSERT INTO delivery_reports", IntegrityError, carrying="m2"
    )
    with m2_refused, store.session() as session, session.begin():
        for event_id in (readable, not_json, refused):
            results[event_id] = reprocess(session, session.get_one(RawEvent, event_id))
    assert results[readable] == IngestResult(readable, 1, 0, 1)
    assert results[not_json] == IngestResult(not_json, 0, 0, 2)
    assert results[refused] == IngestResult(refused, 0, 0, 2)
    assert [(r.msg_id, r.raw_event_id) for r in stored(store)] == [("m1", readable)]
