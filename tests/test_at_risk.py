"""Receipts at risk, end to end: refused callbacks are counted durably, the clock beats, and
the status page, doctor and /metrics count down from what the store holds."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.jsms.client import JsmsClient
from app.pull.clock import build_scheduler, send_heartbeat
from app.pull.puller import Puller
from app.pull.state import SyncPolicy
from app.store.alarms import HEARTBEAT_KEPT, beat, last_heartbeat
from app.store.db import Database
from app.store.models import ClockHeartbeat, RefusedCallback, SyncState, utcnow
from tests.support import APPS, TOKEN, failing_statements, sample
from tests.wire import report, signed_form

ONE, SECRET = "app-one", APPS["app-one"]


def refusals(database: Database) -> list[tuple[str, str, str, int]]:
    with database.session() as session:
        rows = session.scalars(select(RefusedCallback).order_by(RefusedCallback.app_key))
        return [(r.app_key, r.kind, r.reason, r.refusals) for r in rows]


def seed_state(database: Database, app_key: str, kind: str, mode: str, ago: timedelta) -> None:
    with database.session() as session, session.begin():
        session.add(
            SyncState(app_key=app_key, kind=kind, mode=mode, last_success_at=utcnow() - ago)
        )


def test_refusals_jsms_retries_are_counted_per_app_kind_and_reason(
    client: FlaskClient, database: Database
) -> None:
    form = signed_form(ONE, SECRET, "SMS_REPLY", [])
    bad = form | {"signature": "0" * 40}
    assert client.post(f"/callbacks/jsms/{ONE}", data=bad).status_code == 401
    assert client.post(f"/callbacks/jsms/{ONE}", data=bad).status_code == 401
    assert client.post("/callbacks/jsms", data=bad | {"type": "SMS_STATE"}).status_code == 401
    # Not JSMS's (no signature at all), or not refused: not counted.
    assert client.post("/callbacks/jsms", data={"type": "SMS_REPORT"}).status_code == 401
    assert client.post("/callbacks/jsms", data=form).status_code == 200
    # Signed but refused (a bad form): counted with its reason, like every signed refusal.
    assert client.post("/callbacks/jsms", data=form | {"data": "{"}).status_code == 400
    assert sorted(refusals(database)) == [
        ("", "other", "bad_signature", 1),
        (ONE, "reply", "bad_signature", 2),
        (ONE, "reply", "invalid_data", 1),
    ]


def test_a_503_is_counted_against_the_app_that_signed_it(
    client: FlaskClient, database: Database
) -> None:
    with failing_statements(database.engine, "INSERT INTO delivery_reports"):
        form = signed_form(ONE, SECRET, "SMS_REPORT", [report("m1")])
        assert client.post("/callbacks/jsms", data=form).status_code == 503
    assert refusals(database) == [(ONE, "report", "database_unavailable", 1)]


def test_status_page_counts_down_red_under_a_day_with_the_fix(
    client: FlaskClient, database: Database
) -> None:
    seed_state(database, ONE, "report", "pull", timedelta(days=2, hours=12))
    seed_state(database, "app-two", "report", "pull", timedelta(minutes=5))
    seed_state(database, "app-two", "reply", "callback", timedelta(days=9))
    seed_state(database, "gone-app", "report", "pull", timedelta(days=9))  # not configured
    client.post(f"/callbacks/jsms/{ONE}", data=signed_form(ONE, "wrong", "SMS_REPORT", []))
    client.post("/login", data={"token": TOKEN})
    page = client.get("/").text
    section = page[page.index('id="at-risk"') : page.index("</table>", page.index('id="at-risk"'))]
    rows = section.split("<tr")[2:]
    assert len(rows) == 3, section
    pull, refused, fine = rows  # soonest first
    assert 'class="risk-red" data-app="app-one" data-kind="report" data-cause="pull"' in pull
    assert "11 h 59 min" in pull or "12 h 0 min" in pull
    assert "heroku ps:scale clock=1" in pull
    assert 'class="risk-red" data-app="app-one" data-kind="report" data-cause="bad_sig' in refused
    assert "13 h 2 min" in refused or "13 h 3 min" in refused
    assert "master secret in JSMS_APPS" in refused
    assert 'class="risk-ok" data-app="app-two" data-kind="report"' in fine
    assert "2 d 23 h" in fine


def test_doctor_counts_down_and_fails_under_a_day(app: Flask, database: Database) -> None:
    seed_state(database, ONE, "report", "paused", timedelta(days=2, hours=6))
    seed_state(database, "app-two", "reply", "pull", timedelta(hours=1))
    output = app.test_cli_runner().invoke(args=["jsms", "doctor"]).output
    assert "[FAIL] at risk: app-one report: paused mode, last successful pull" in output
    assert "drops records not yet pulled in 17 h" in output
    assert "fix: fix the cause in the last error" in output
    assert "[  ok] at risk: app-two reply: pull mode" in output and "in 2 d 22 h" in output


def test_the_clock_beats_and_metrics_export_the_newest_heartbeat(
    client: FlaskClient, database: Database, tmp_path: Path
) -> None:
    assert "\njsms_clock_last_heartbeat_timestamp_seconds " not in client.get("/metrics").text
    with JsmsClient("http://127.0.0.1:9") as upstream:
        puller = Puller(database, upstream, SyncPolicy(), spool=tmp_path)
        assert "heartbeat" in {job.id for job in build_scheduler(puller).get_jobs()}
        send_heartbeat(puller)
    with database.session() as session, session.begin():
        beat(session, "long-gone", utcnow() - HEARTBEAT_KEPT - timedelta(hours=1))
        beat(session, "other-clock", utcnow() - timedelta(minutes=3))
    with database.session() as session:
        holders = set(session.scalars(select(ClockHeartbeat.holder)))
        newest = last_heartbeat(session)
    assert holders == {puller.holder, "other-clock"}  # the long-gone clock was forgotten
    assert newest is not None and utcnow() - newest < timedelta(minutes=1)
    exported = sample(client.get("/metrics").text, "jsms_clock_last_heartbeat_timestamp_seconds")
    assert exported == newest.timestamp()
