"""Retention: expired rows go in batches; quarantined raw events and recent rows stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select

from app.store import retention
from app.store.db import Database
from app.store.models import DeliveryReport, RawEvent, Reply
from app.store.retention import RetentionPolicy, purge
from tests.support import APPS, row_count, throwaway_spool
from tests.wire import report, signed_form

NOW = datetime.now(UTC)
DAY_MS = 86_400_000


def ms(days_ago: float) -> int:
    return int((NOW - timedelta(days=days_ago)).timestamp() * 1000)


def load(client: FlaskClient) -> None:
    old = [report(f"old{i}", receive_time=ms(40)) for i in range(5)]
    new = [report("new", receive_time=ms(1))]
    replies = [
        {"phone": "1", "content": "old", "replyTime": ms(40)},
        {"phone": "1", "content": "new", "replyTime": ms(1)},
    ]
    for record_type, data in (
        ("SMS_REPORT", old + new),
        ("SMS_REPLY", replies),
        ("SMS_UNKNOWN", {"a": 1}),
    ):
        form = signed_form("app-one", APPS["app-one"], record_type, data)
        assert client.post("/callbacks/jsms", data=form).status_code == 200


def test_purge_by_age_in_batches_keeps_quarantined(
    client: FlaskClient, database: Database, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    load(client)
    monkeypatch.setattr(retention, "BATCH", 2)  # several batches for 5 old reports
    with database.session() as session:
        deleted = purge(session, RetentionPolicy(raw_event_days=0, record_days=30), NOW)
        assert deleted == {"delivery_reports": 5, "replies": 1, "review_results": 0}
        assert [r.msg_id for r in session.scalars(select(DeliveryReport))] == ["new"]
        assert [r.content for r in session.scalars(select(Reply))] == ["new"]
        assert row_count(session, RawEvent) == 3  # raw events have their own age

    later = NOW + timedelta(days=100)
    with database.session() as session:
        deleted = purge(session, RetentionPolicy(raw_event_days=90, record_days=0), later)
        # The replay memory goes with them: all three callbacks' signatures are past the age.
        assert deleted == {"raw_events": 2, "callback_signatures": 3, "signature_reuses": 0}
        [kept] = session.scalars(select(RawEvent)).all()
        assert kept.type == "SMS_UNKNOWN" and kept.quarantined == 1


def test_purge_command_with_defaults_keeps_records(
    app: Flask, client: FlaskClient, runner: FlaskCliRunner
) -> None:
    load(client)
    result = runner.invoke(args=["jsms", "purge"])
    assert result.exit_code == 0, result.output
    assert "0 raw_events" in result.output and "delivery_reports" not in result.output


def test_the_clock_schedules_retention(
    client: FlaskClient, database: Database, tmp_path: Path
) -> None:
    from app.jsms.client import JsmsClient
    from app.pull.clock import build_scheduler
    from app.pull.puller import Puller
    from app.pull.state import SyncPolicy

    load(client)
    with JsmsClient("http://127.0.0.1:9") as jsms:
        puller = Puller(database, jsms, SyncPolicy(), spool=tmp_path)
        with_retention = build_scheduler(puller, RetentionPolicy(90, 30))
        without = build_scheduler(puller, RetentionPolicy(0, 0))
        always = {"heartbeat", "spool", "rollup"}
        assert {j.id for j in with_retention.get_jobs()} == always | {"retention"}
        assert {j.id for j in without.get_jobs()} == always
        job = with_retention.get_job("retention")
        job.func(*job.args, **job.kwargs)  # what the scheduler runs, on this database
    assert row_count(database, DeliveryReport) == 1
    assert row_count(database, Reply) == 1


def test_one_run_deletes_at_most_its_bound_and_the_next_run_continues(
    client: FlaskClient, database: Database, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """A backlog is worked off over several runs: no run holds the table for longer than
    `max_batches` batches."""
    load(client)  # 5 expired reports, 1 recent
    monkeypatch.setattr(retention, "BATCH", 2)
    policy = RetentionPolicy(raw_event_days=0, record_days=30)
    with database.session() as session:
        assert purge(session, policy, NOW, max_batches=1)["delivery_reports"] == 2
    assert row_count(database, DeliveryReport) == 4
    with database.session() as session:
        assert purge(session, policy, NOW, max_batches=2)["delivery_reports"] == 3
        assert purge(session, policy, NOW, max_batches=2)["delivery_reports"] == 0
    assert row_count(database, DeliveryReport) == 1


def test_the_clocks_retention_run_is_bounded(
    client: FlaskClient, database: Database, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from app.jsms.client import JsmsClient
    from app.pull import clock
    from app.pull.puller import Puller
    from app.pull.state import SyncPolicy

    load(client)
    monkeypatch.setattr(retention, "BATCH", 2)
    monkeypatch.setattr(clock, "RETENTION_BATCHES", 1)
    with JsmsClient("http://127.0.0.1:9") as jsms:
        puller = Puller(database, jsms, SyncPolicy(), spool=throwaway_spool())
        clock.enforce_retention(puller, RetentionPolicy(raw_event_days=0, record_days=30))
    assert row_count(database, DeliveryReport) == 4  # one batch of 2 out of 5 expired
