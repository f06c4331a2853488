"""A clock skew between JSMS and this server, read from the callbacks' signed timestamps, shows
on the status page and in `jsms doctor` once it passes a few minutes, with the fix."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from flask import Flask
from flask.testing import FlaskClient

from app.ops.skew import SKEW_SHOWN, Skew, clock_skew
from app.store.db import Database
from tests.support import APPS, TOKEN
from tests.wire import report, signed_form

ONE, SECRET = "app-one", APPS["app-one"]
MINUTE_MS = 60_000


def post_signed(client: FlaskClient, offset_ms: int, msg_id: str) -> None:
    """A callback signed `offset_ms` away from now (JSMS's clock ahead when positive)."""
    timestamp = str(int(time.time() * 1000) + offset_ms)
    form = signed_form(ONE, SECRET, "SMS_REPORT", [report(msg_id)], timestamp=timestamp)
    assert client.post("/callbacks/jsms", data=form).status_code == 200


def status_page(client: FlaskClient) -> str:
    assert client.post("/login", data={"token": TOKEN}).status_code == 302
    return client.get("/").get_data(as_text=True)


def test_a_server_clock_two_hours_behind_is_shown_with_the_fix(
    app: Flask, client: FlaskClient
) -> None:
    post_signed(client, -10 * 60 * MINUTE_MS, "late-retry")  # a retry, hours late: no skew
    post_signed(client, 2 * 60 * MINUTE_MS + 30_000, "ahead")  # JSMS 2 h ahead: quarantined
    page = status_page(client)
    assert 'id="clock-skew"' in page
    assert "JSMS&#39;s clock runs 2 h 0 min ahead of this server&#39;s" in page
    assert "timedatectl set-ntp true" in page and "jsms trust" in page
    doctor = app.test_cli_runner().invoke(args=["jsms", "doctor"])
    assert "[warn] clock skew: JSMS's clock runs 2 h 0 min ahead of this server's" in doctor.output
    assert "fix: this server's clock is behind JSMS's: sync it" in doctor.output


def test_a_skew_of_a_few_minutes_is_not_shown(app: Flask, client: FlaskClient) -> None:
    post_signed(client, 4 * MINUTE_MS, "close")
    assert 'id="clock-skew"' not in status_page(client)
    doctor = app.test_cli_runner().invoke(args=["jsms", "doctor"])
    assert "[  ok] clock skew: within 0:05:00" in doctor.output


def test_the_skew_is_the_largest_lead_of_the_newest_callbacks(database: Database) -> None:
    """Delays only make a callback look older: the largest timestamp - received_at wins."""
    with database.session() as session:
        assert clock_skew(session, datetime.now(UTC)) is None
    skew = Skew(timedelta(minutes=-30), 3)
    assert skew.shown and "30 min 0 s behind this server's" in skew.detail
    assert not Skew(SKEW_SHOWN, 1).shown and Skew(SKEW_SHOWN + timedelta(seconds=1), 1).shown
