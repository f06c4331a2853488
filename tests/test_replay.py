"""A callback's signature is good once: retries pass; replays with other data and stale or
future timestamps are kept raw but quarantined (signed is kept), on SQLite and PostgreSQL.
The bound on one signature's payloads and JSMS's shared-triple sample: test_signed_is_kept.py."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.jsms import callback
from app.store import replay
from app.store.db import Database
from app.store.models import CallbackSignature, DeliveryReport, RawEvent, SignatureReuse
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


def test_same_signature_other_data_is_kept_quarantined_and_never_stored(
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
    assert response.status_code == 200
    assert response.get_json() == {"stored": 0, "duplicates": 0, "quarantined": 1}
    assert row_count(database, RawEvent) == 2
    with database.session() as session:
        assert session.scalars(select(DeliveryReport.status)).all() == [4001]
        kept = session.scalars(select(RawEvent).where(RawEvent.suspect.is_not(None))).one()
    assert (kept.suspect, kept.payload, kept.stored) == ("signature_reused", forged["data"], 0)
    assert (kept.quarantine_reason or "").startswith("signature_reused: ")
    after = sample(client.get("/metrics").text, "jsms_callback_signatures_refused_total",
                   reason="reused")  # fmt: skip
    assert after == before + 1
    assert post(client, forged).get_json() == {"stored": 0, "duplicates": 1, "quarantined": 0}
    assert row_count(database, RawEvent) == 2  # its retry is a retry
    [line, *_] = [r for r in caplog.records if r.name == "app.store.replay"]
    assert line.levelno == logging.WARNING
    assert line.getMessage() == "callback signature reused with other data: kept, quarantined"
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
    ("timestamp", "skew"),
    [
        (lambda: str(now_ms() - 91 * 24 * HOUR_MS), "91 d 0 h 0 min behind"),  # past the retention
        (lambda: str(now_ms() + 2 * HOUR_MS + 30_000), "2 h 0 min"),  # over an hour ahead
    ],
    ids=["too-old", "too-far-ahead"],
)
def test_timestamp_outside_the_memory_is_kept_quarantined_as_signature_time(
    client: FlaskClient, database: Database, timestamp, skew: str
) -> None:  # type: ignore[no-untyped-def]
    form = signed_form(ONE, SECRET, "SMS_REPORT", [report("m1")], timestamp=timestamp())
    response = post(client, form)
    assert response.status_code == 200
    assert response.get_json() == {"stored": 0, "duplicates": 0, "quarantined": 1}
    assert row_count(database, DeliveryReport) == 0
    with database.session() as session:
        kept = session.scalars(select(RawEvent)).one()
    assert kept.suspect == "signature_time" and kept.payload == form["data"]
    assert skew in (kept.quarantine_reason or "")


@pytest.mark.parametrize("timestamp", ["not-a-time", str(2**70), "1.5"])
def test_a_timestamp_that_is_not_epoch_milliseconds_is_400(
    client: FlaskClient, database: Database, timestamp: str
) -> None:
    form = signed_form(ONE, SECRET, "SMS_REPORT", [report("m1")], timestamp=timestamp)
    response = post(client, form)
    assert response.status_code == 400
    assert error_code(response) == "invalid_timestamp"
    assert row_count(database, RawEvent) == 0


def test_the_window_follows_the_raw_event_retention(app: Flask, database: Database) -> None:
    app.config["SETTINGS"] = app.config["SETTINGS"].model_copy(
        update={"raw_event_retention_days": 2}
    )
    client = app.test_client()
    three_days = signed_form(ONE, SECRET, "SMS_REPORT", [report("m1")],
                             timestamp=str(now_ms() - 72 * HOUR_MS))  # fmt: skip
    assert post(client, three_days).get_json()["quarantined"] == 1
    one_day = signed_form(ONE, SECRET, "SMS_REPORT", [report("m1")],
                          timestamp=str(now_ms() - 24 * HOUR_MS))  # fmt: skip
    assert post(client, one_day).get_json()["stored"] == 1


NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


def use(nonce: str = "n", timestamp: int = NOW_MS) -> callback.SignedUse:
    return callback.signed_use(ONE, nonce, str(timestamp), "SMS_REPORT", "[]")


def suspect(timestamp: int, memory_days: int = 90) -> callback.Suspect | None:
    return callback.window_suspect(timestamp, now=NOW, memory_days=memory_days)


def test_the_accepted_window_is_exact() -> None:
    """A signature from exactly the memory's oldest moment or exactly an hour ahead is
    believed; a millisecond further either way is suspect, with the skew in the reason."""
    oldest = NOW_MS - 90 * 24 * HOUR_MS
    assert suspect(oldest) is None and suspect(NOW_MS + HOUR_MS) is None
    outside_and_skew = ((oldest - 1, "90 d 0 h 0 min behind"), (NOW_MS + HOUR_MS + 1, "1 h 0 min"))
    for outside, skew in outside_and_skew:
        found = suspect(outside)
        assert found is not None and found.code == "signature_time"
        assert skew in found.reason
        assert "(window: 90 days back, 1:00:00 ahead)" in found.reason
    assert suspect(1, memory_days=0) is None  # no retention: remembered forever
    found = suspect(NOW_MS + HOUR_MS + 1, memory_days=0)
    assert found is not None and "any number of days back" in found.reason
    assert suspect(10**18 - 1) is not None  # far beyond what a datetime holds: no crash


def test_a_nonce_of_64_characters_is_taken_and_a_longer_one_refused() -> None:
    assert use(nonce="n" * 64).nonce == "n" * 64
    with pytest.raises(callback.InvalidNonce) as refused:
        use(nonce="n" * 65)
    assert (refused.value.code, refused.value.message) == (
        "invalid_nonce", "the nonce is longer than 64 characters"
    )  # fmt: skip


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
    assert statuses == [200, 200]
    assert row_count(database, RawEvent) == 2
    assert row_count(database, RawEvent, RawEvent.suspect == "signature_reused") == 1
    assert row_count(database, DeliveryReport) == 1


def test_second_writer_of_a_triple_waits_for_the_first_and_is_a_reuse(store: Database) -> None:
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
    """A triple goes once its timestamp and its receipt are both past the age: an old
    signature replayed now is remembered (and its payloads bounded) for the whole age again."""
    now = datetime.now(UTC)
    forty_days_ago = now - timedelta(days=40)
    old = callback.SignedUse(ONE, "1", now_ms() - 40 * 24 * HOUR_MS, "a" * 64)
    recent = callback.SignedUse(ONE, "2", now_ms() - 24 * HOUR_MS, "a" * 64)
    replayed = callback.SignedUse(ONE, "3", now_ms() - 40 * 24 * HOUR_MS, "a" * 64)
    with store.session() as session, session.begin():
        replay.first_uses(session, [old], forty_days_ago)
        replay.first_uses(session, [recent, replayed], now)
        replay.first_uses(session, [callback.SignedUse(ONE, "3", replayed.timestamp, "b" * 64)],
                          now)  # fmt: skip
    with store.session() as session:
        deleted = purge(session, RetentionPolicy(raw_event_days=30, record_days=0), now)
    assert (deleted["callback_signatures"], deleted["signature_reuses"]) == (1, 0)
    with store.session() as session:
        assert sorted(session.scalars(select(CallbackSignature.nonce))) == ["2", "3"]
        assert session.scalars(select(SignatureReuse.nonce)).all() == ["3"]


def test_a_triple_is_judged_by_the_payloads_it_carried_itself(store: Database) -> None:
    """The memory is per triple: a payload that another triple carried (another app, nonce or
    timestamp; first or reused there) is news to this one, kept quarantined as a reuse, never
    taken for this triple's retry (which would store nothing of it)."""
    now, ts = datetime.now(UTC), now_ms()
    mine = callback.SignedUse(ONE, "n1", ts, "p" * 64)
    triples = [("app-two", "n1", ts), (ONE, "n2", ts), (ONE, "n1", ts + 1)]
    with store.session() as session, session.begin():
        firsts = [callback.SignedUse(*t, "q" * 64) for t in triples]  # q: their first payload
        assert replay.first_uses(session, [mine, *firsts], now) == [Verdict.FIRST] * 4
        reuses = [callback.SignedUse(*t, "s" * 64) for t in triples]  # s: a reuse of theirs
        assert replay.first_uses(session, reuses, now) == [Verdict.REUSED] * 3
        again = [replace(mine, digest="q" * 64), replace(mine, digest="s" * 64)]
        assert replay.first_uses(session, again, now) == [Verdict.REUSED] * 2
