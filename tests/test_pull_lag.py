"""Lag you can see: per app and kind, the age of the newest record pulled (its carrier time) and
the time since the last successful pull, in /metrics, /api/v1/sync and the status page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask.testing import FlaskClient

from app.jsms.client import JsmsClient
from app.jsms.records import ReplyMessage, Report
from app.pull.puller import Puller
from app.pull.state import SyncPolicy, newest_carrier_time
from app.store.db import Database
from app.store.models import SyncState
from tests.fake_jsms import FakeJsms
from tests.support import APPS, FAKE_WINDOW, TOKEN, sample, throwaway_spool

APP = "app-one"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def pull_with_carrier_times(fake: FakeJsms, store: Database, newest: datetime) -> None:
    """Pull 600 reports (two batches) whose newest carrier time is `newest`, and one reply."""
    reports = [
        {"msgId": f"lag{i}", "phone": "13800138000", "status": 4001,
         "receiveTime": ms(newest - timedelta(minutes=i))}
        for i in range(600)
    ]  # fmt: skip
    reports.insert(0, reports.pop(300))  # the newest is not last in the batch, nor first
    fake.add(APP, "report", reports)
    reply_time = newest - timedelta(hours=1)
    fake.add(APP, "reply", [{"phone": "1", "replyTime": ms(reply_time), "content": "TD"}])
    with JsmsClient(fake.url) as client:
        Puller(store, client, SyncPolicy(window=FAKE_WINDOW), spool=throwaway_spool()).sync_app(
            APP, APPS[APP]
        )


def test_the_newest_carrier_time_is_stored_with_the_batch(
    fake_jsms: FakeJsms, store: Database
) -> None:
    newest = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    pull_with_carrier_times(fake_jsms, store, newest)
    # A later pass that brings only older records does not move it back.
    fake_jsms.add(APP, "report", [{"msgId": "old", "phone": "1", "status": 4001,
                                  "receiveTime": ms(newest - timedelta(days=1))}])  # fmt: skip
    with JsmsClient(fake_jsms.url) as client:
        Puller(store, client, SyncPolicy(window=FAKE_WINDOW), spool=throwaway_spool()).sync_app(
            APP, APPS[APP], ["report"]
        )

    with store.session() as session:
        report = session.get(SyncState, (APP, "report"))
        reply = session.get(SyncState, (APP, "reply"))
    assert report is not None and reply is not None
    assert report.newest_record_at == newest
    assert reply.newest_record_at == newest - timedelta(hours=1)


def test_a_carrier_clock_ahead_of_ours_is_capped_at_the_answer() -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    ahead = Report("m", "1", 4001, now + timedelta(hours=3))
    reply = ReplyMessage("1", "TD", now - timedelta(minutes=1))
    assert newest_carrier_time([reply, ahead], now) == now
    assert newest_carrier_time([reply], now) == now - timedelta(minutes=1)
    assert newest_carrier_time([], now) is None


def test_lag_in_metrics_api_and_status_page(
    fake_jsms: FakeJsms, store: Database, client: FlaskClient
) -> None:
    newest = datetime.now(UTC) - timedelta(hours=2)
    pull_with_carrier_times(fake_jsms, store, newest)

    text = client.get("/metrics").text
    report_age = sample(text, "jsms_sync_newest_record_age_seconds", app_key=APP, kind="report")
    reply_age = sample(text, "jsms_sync_newest_record_age_seconds", app_key=APP, kind="reply")
    since = sample(text, "jsms_sync_last_success_age_seconds", app_key=APP, kind="report")
    assert 7200 <= report_age < 7200 + 600 and 10800 <= reply_age < 10800 + 600
    assert 0 <= since < 600

    items = client.get("/api/v1/sync", headers=AUTH).get_json()["items"]
    by_key = {(i["app_key"], i["kind"]): i for i in items}
    pulled = by_key[(APP, "report")]
    assert pulled["newest_record_at"].startswith(newest.strftime("%Y-%m-%dT%H:%M:%S"))
    assert 7200 <= pulled["newest_record_age_seconds"] < 7200 + 600
    assert 0 <= pulled["last_success_age_seconds"] < 600
    never = by_key[("app-two", "report")]
    assert never["newest_record_age_seconds"] is None and never["newest_record_at"] is None

    assert client.post("/login", data={"token": TOKEN}).status_code == 302
    html = client.get("/").get_data(as_text=True)
    assert "newest record pulled" in html
    assert "<td>2 h ago<br>" in html and "<td>3 h ago<br>" in html


def test_the_fake_stamps_its_records_when_they_are_queued() -> None:
    """The demo (`python -m tests.fake_jsms`) shows no lag that is not there."""
    import time

    from tests.fake_jsms import synthetic_replies, synthetic_reports

    before = int(time.time() * 1000)
    reports, replies = synthetic_reports(2000), synthetic_replies(300)
    after = int(time.time() * 1000)
    for times in ([r["receiveTime"] for r in reports], [r["replyTime"] for r in replies]):
        assert before - 2000 <= min(times) and before - 1 <= max(times) <= after
