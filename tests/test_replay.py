"""A callback's signature is good once: retries pass, replays with other data and stale or
future timestamps are refused, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from datetime import UTC, datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.jsms import callback
from app.store import replay
from app.store.db import Database
from app.store.models import CallbackSignature, DeliveryReport, RawEvent
from app.store.replay import Verdict
from app.store.retention import RetentionPolicy, purge
from tests.support import APPS, row_count, sample
from tests.wire import report, signed_form

ONE, SECRET = "app-one", APPS["app-one"]
HOUR_MS = 3_600_000


def now_ms() -> int:
    return int(time.time() * 1000)


def post(client: FlaskClient, form: dict[str, str]):  # type: ignore[no-untyped-def]
    return client.post("/callbacks/jsms", data=form)


def error_code(response) -> str:  # type: ignore[no-untyped-def]
    assert response.mimetype == "application/json"
    return str(response.get_json()["error"]["code"])


def test_same_signature_other_data_is_401_and_stores_nothing(
    client: FlaskClient, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="app.store.replay")
    genuine = signed_form(ONE, SECRET, "SMS_REPORT", [report("m1", status=4001)])
    assert post(client, genuine).status_code == 200
    before = sample(client.get("/metrics").text, "jsms_callback_signatures_refused_total",
                    reason="reused")  # fmt: skip
    forged = genuine | {"data": '[{"msgId":"m1","phone":"13800138000","status":4002,'
                                '"receiveTime":4102444800000}]'}  # fmt: skip
    response = post(client, forged)
    assert response.status_code == 401
    assert error_code(response) == "signature_reused"
    assert row_count(database, RawEvent) == 1
    with database.session() as session:
        assert session.scalars(select(DeliveryReport.status)).all() == [4001]
    after = sample(client.get("/metrics").text, "jsms_callback_signatures_refused_total",
                   reason="reused")  # fmt: skip
    assert after == before + 1
    assert response.get_json()["error"]["message"] == (
        "this signature was already used for another callback"
    )
    [line] = [r for r in caplog.records if r.name == "app.store.replay"]
    assert line.levelno == logging.WARNING
    assert line.getMessage() == "callback signature reused with other data"
    assert line.__dict__["event"] == "signature_reused"
    assert line.__dict__["app_key"] == ONE and line.__dict__["nonce"] == genuine["nonce"]
    assert "4102444800000" not in caplog.text and "13800138000" not in caplog.text


def test_same_signature_same_data_is_a_retry_counted_as_duplicates(
    client: FlaskClient, database: Database
) -> None:
    form = signed_form(ONE, SECRET, "SMS_REPORT", [report("m1"), report("m2"), {"bad": 1}])
    assert post(client, form).get_json() == {"stored": 2, "duplicates": 0, "quarantined": 1}
    retry = post(client, form)
    assert retry.status_code == 200
    assert retry.get_json() == {"stored": 0, "duplicates": 3, "quarantined": 0}
    assert row_count(database, RawEvent) == 1  # a retry of a stored callback stores nothing new


def test_jsms_retry_hours_later_re_signed_is_stored_as_duplicates(
    client: FlaskClient, database: Database
) -> None:
    records = [report("m1"), report("m2")]
    first = signed_form(ONE, SECRET, "SMS_REPORT", records,
                        timestamp=str(now_ms() - 12 * HOUR_MS))  # fmt: skip
    assert post(client, first).get_json()["stored"] == 2
    resigned = signed_form(ONE, SECRET, "SMS_REPORT", records)  # new nonce and timestamp
    answer = post(client, resigned)
    assert answer.status_code == 200
    assert answer.get_json() == {"stored": 0, "duplicates": 2, "quarantined": 0}


def test_jsms_retry_hours_later_unchanged_is_accepted(client: FlaskClient) -> None:
    form = signed_form(ONE, SECRET, "SMS_REPORT", [report("m1")],
                       timestamp=str(now_ms() - 12 * HOUR_MS))  # fmt: skip
    assert post(client, form).status_code == 200
    assert post(client, form).get_json() == {"stored": 0, "duplicates": 1, "quarantined": 0}


@pytest.mark.parametrize(
    "timestamp",
    [
        lambda: str(now_ms() - 91 * 24 * HOUR_MS),  # older than the 90-day raw-event retention
        lambda: str(now_ms() + 2 * HOUR_MS),  # more than an hour ahead
        lambda: "not-a-time",
        lambda: str(2**70),
    ],
    ids=["too-old", "too-far-ahead", "not-a-number", "huge"],
)
def test_timestamp_outside_the_memory_is_401_expired(
    client: FlaskClient, database: Database, timestamp
) -> None:  # type: ignore[no-untyped-def]
    form = signed_form(ONE, SECRET, "SMS_REPORT", [report("m1")], timestamp=timestamp())
    response = post(client, form)
    assert response.status_code == 401
    assert error_code(response) == "signature_expired"
    assert row_count(database, RawEvent) == 0


def test_expiry_follows_the_raw_event_retention(app: Flask, database: Database) -> None:
    app.config["SETTINGS"] = app.config["SETTINGS"].model_copy(
        update={"raw_event_retention_days": 2}
    )
    client = app.test_client()
    three_days = signed_form(ONE, SECRET, "SMS_REPORT", [report("m1")],
                             timestamp=str(now_ms() - 72 * HOUR_MS))  # fmt: skip
    assert error_code(post(client, three_days)) == "signature_expired"
    one_day = signed_form(ONE, SECRET, "SMS_REPORT", [report("m1")],
                          timestamp=str(now_ms() - 24 * HOUR_MS))  # fmt: skip
    assert post(client, one_day).status_code == 200


NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


def use(nonce: str = "n", timestamp: int = NOW_MS, memory_days: int = 90) -> callback.SignedUse:
    return callback.signed_use(ONE, nonce, str(timestamp), "SMS_REPORT", "[]", now=NOW,
                             memory_days=memory_days)  # fmt: skip


def test_the_accepted_window_is_exact() -> None:
    """A signature from exactly the memory's oldest moment or exactly an hour ahead is taken;
    a millisecond further either way is not."""
    oldest = NOW_MS - 90 * 24 * HOUR_MS
    assert use(timestamp=oldest).timestamp == oldest
    assert use(timestamp=NOW_MS + HOUR_MS).timestamp == NOW_MS + HOUR_MS
    for outside in (oldest - 1, NOW_MS + HOUR_MS + 1):
        with pytest.raises(callback.SignatureExpired) as refused:
            use(timestamp=outside)
        assert refused.value.message == (
            "the signature's timestamp is outside the accepted window (90 days back, 1:00:00 ahead)"
        )
    assert use(timestamp=1, memory_days=0).timestamp == 1  # no retention: remembered forever
    with pytest.raises(callback.SignatureExpired, match="any number of days back"):
        use(timestamp=NOW_MS + HOUR_MS + 1, memory_days=0)


def test_a_nonce_of_64_characters_is_taken_and_a_longer_one_refused() -> None:
    assert use(nonce="n" * 64).nonce == "n" * 64
    with pytest.raises(callback.InvalidNonce) as refused:
        use(nonce="n" * 65)
    assert (refused.value.code, refused.value.message) == (
        "invalid_nonce", "the nonce is longer than 64 characters"
    )  # fmt: skip


def test_an_expired_signature_is_counted(client: FlaskClient) -> None:
    def expired() -> float:
        return sample(client.get("/metrics").text, "jsms_callback_signatures_refused_total",
                      reason="expired")  # fmt: skip

    before = expired()
    form = signed_form(ONE, SECRET, "SMS_REPORT", [report("m1")], timestamp="1")
    assert error_code(post(client, form)) == "signature_expired"
    assert expired() == before + 1


def test_the_digest_of_a_use_never_changes_between_releases() -> None:
    """Stored digests are compared with new ones: JSMS retrying across an upgrade must still
    be a retry. Text that is not valid UTF-8 (a lone surrogate) is digested too."""
    assert callback.digest_of("SMS_REPORT", "[]") == hashlib.sha256(b"SMS_REPORT\x1f[]").hexdigest()
    odd = callback.digest_of("SMS_\ud800", '["\udfff"]')
    assert odd == hashlib.sha256(b'SMS_\xed\xa0\x80\x1f["\xed\xbf\xbf"]').hexdigest()


def test_concurrent_requests_with_one_signature_store_at_most_one(
    app: Flask, database: Database
) -> None:
    base = signed_form(ONE, SECRET, "SMS_REPORT", [report("a")])
    other = f'[{{"msgId":"b","phone":"1","status":4001,"receiveTime":{now_ms()}}}]'
    forms = [base, base | {"data": other}]
    start = threading.Barrier(len(forms))
    statuses: list[int] = []

    def send(form: dict[str, str]) -> None:
        client = app.test_client()
        start.wait()
        statuses.append(client.post("/callbacks/jsms", data=form).status_code)

    threads = [threading.Thread(target=send, args=(f,)) for f in forms]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 401]
    assert row_count(database, RawEvent) == 1
    assert row_count(database, DeliveryReport) == 1


def test_second_writer_of_a_triple_waits_for_the_first_and_is_refused(store: Database) -> None:
    """The unique index, not a read: the second insert sees the first once it commits."""
    now = datetime.now(UTC)
    use = callback.SignedUse(ONE, "42", now_ms(), "a" * 64)
    other = callback.SignedUse(ONE, "42", use.timestamp, "b" * 64)
    outcome: list[object] = []

    def second() -> None:
        with store.session() as session, session.begin():
            outcome.extend(replay.first_uses(session, [other], now))

    with store.session() as session, session.begin():
        assert replay.first_uses(session, [use], now) == [Verdict.FIRST]
        thread = threading.Thread(target=second)
        thread.start()  # blocks on the uncommitted row (PostgreSQL) or the write lock (SQLite)
    thread.join()
    assert outcome == [Verdict.REUSED]
    assert row_count(store, CallbackSignature) == 1


def test_retention_forgets_signatures_with_the_raw_events(store: Database) -> None:
    now = datetime.now(UTC)
    old = callback.SignedUse(ONE, "1", now_ms() - 40 * 24 * HOUR_MS, "a" * 64)
    recent = callback.SignedUse(ONE, "2", now_ms() - 24 * HOUR_MS, "a" * 64)
    with store.session() as session, session.begin():
        replay.first_uses(session, [old, recent], now)
    with store.session() as session:
        deleted = purge(session, RetentionPolicy(raw_event_days=30, record_days=0), now)
    assert deleted["callback_signatures"] == 1
    with store.session() as session:
        assert session.scalars(select(CallbackSignature.nonce)).all() == ["2"]
