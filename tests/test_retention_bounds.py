"""Retention at its edges: each age is counted in days, rows just inside a cutoff stay, rows just
outside go, and the replay memory reaches at least as far back as the signatures the callback
reader accepts; on SQLite and PostgreSQL.

The ages are chosen so that a cutoff counted in hours instead of days fails: with 30 days, a
row 29 d 23 h old and one 2 days old must stay, one 30 d 1 h old must go.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from app import create_app
from app.jsms.callback import digest_of, signed_use, window_suspect
from app.store.db import Database
from app.store.models import CallbackSignature, DeliveryReport, RawEvent, Reply, ReviewResult
from app.store.replay import Verdict, first_uses
from app.store.retention import RetentionPolicy, purge
from tests.support import APPS, make_settings
from tests.wire import report, signed_form

ONE, SECRET = "app-one", APPS["app-one"]
# Whole milliseconds, so an age lands on a signed timestamp exactly.
NOW = datetime.now(UTC).replace(microsecond=0)
DAYS = 30
# Age → the tag of the rows that age is given; which survive a purge by DAYS at NOW.
AGES = {
    "recent": timedelta(days=2),
    "inside": timedelta(days=DAYS) - timedelta(hours=1),
    "outside": timedelta(days=DAYS) + timedelta(hours=1),
}
KEPT = {"recent", "inside"}


def epoch_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def post(client: FlaskClient, record_type: str, data: Any, **signed: str) -> None:
    form = signed_form(ONE, SECRET, record_type, data, **signed)
    response = client.post("/callbacks/jsms", data=form)
    assert response.status_code == 200, response.get_json()


def load_records(client: FlaskClient, database: Database) -> None:
    """One delivery report, reply and review result per age in AGES, tagged with the age's
    name; each raw event not quarantined is aged too, the last one (unknown type) quarantined."""
    for i, tag in enumerate(AGES):
        post(client, "SMS_REPORT", [report(tag)])
        post(client, "SMS_REPLY", [{"phone": "13800138000", "content": tag,
                                            "replyTime": 1575015093000}])
        post(client, "SMS_TEMPLATE", [{"tempId": i, "status": 2, "refuseReason": tag}])
    with database.session() as session, session.begin():
        for tag, age in AGES.items():
            at = NOW - age
            session.execute(update(DeliveryReport).where(DeliveryReport.msg_id == tag)
                            .values(received_at=at))  # fmt: skip
            session.execute(update(Reply).where(Reply.content == tag).values(replied_at=at))
            session.execute(update(ReviewResult).where(ReviewResult.refuse_reason == tag)
                            .values(ingested_at=at))  # fmt: skip


def kept_tags(database: Database) -> dict[str, set[str]]:
    with database.session() as session:
        return {
            "delivery_reports": set(session.scalars(select(DeliveryReport.msg_id))),
            "replies": set(session.scalars(select(Reply.content))),
            "review_results": set(session.scalars(select(ReviewResult.refuse_reason))),
        }


def test_records_are_kept_for_days_not_hours(client: FlaskClient, database: Database) -> None:
    load_records(client, database)
    with database.session() as session:
        deleted = purge(session, RetentionPolicy(raw_event_days=0, record_days=DAYS), NOW)
    assert deleted == {"delivery_reports": 1, "replies": 1, "review_results": 1}
    assert kept_tags(database) == {table: KEPT for table in deleted}


def test_the_purge_command_counts_the_configured_ages_in_days(database_url: str) -> None:
    """RECORD_RETENTION_DAYS and RAW_EVENT_RETENTION_DAYS reach the purge as days."""
    settings = make_settings(
        database_url, record_retention_days=DAYS, raw_event_retention_days=DAYS
    )
    app = create_app(settings)
    try:
        database: Database = app.extensions["database"]
        load_records(app.test_client(), database)
        result = app.test_cli_runner().invoke(args=["jsms", "purge"])
        assert result.exit_code == 0, result.output
        assert kept_tags(database) == dict.fromkeys(kept_tags(database), KEPT)
    finally:
        app.extensions["database"].engine.dispose()


def test_raw_events_are_kept_for_days_not_hours(client: FlaskClient, database: Database) -> None:
    for tag in AGES:
        post(client, "SMS_REPORT", [report(tag)], nonce=tag)
    post(client, "SMS_UNKNOWN", {"a": 1}, nonce="quarantined")  # kept at any age
    with database.session() as session, session.begin():
        for tag, age in AGES.items():
            session.execute(update(RawEvent).where(RawEvent.nonce == tag)
                            .values(received_at=NOW - age))  # fmt: skip
        session.execute(update(RawEvent).where(RawEvent.nonce == "quarantined")
                        .values(received_at=NOW - timedelta(days=10 * DAYS)))  # fmt: skip
    with database.session() as session:
        deleted = purge(session, RetentionPolicy(raw_event_days=DAYS, record_days=0), NOW)
        assert deleted["raw_events"] == 1
        assert set(session.scalars(select(RawEvent.nonce))) == KEPT | {"quarantined"}
    assert kept_tags(database)["delivery_reports"] == set(AGES)  # records have their own age


def test_the_replay_memory_is_kept_for_days_not_hours(
    client: FlaskClient, database: Database
) -> None:
    for tag, age in AGES.items():
        post(client, "SMS_REPORT", [report(tag)], nonce=tag, timestamp=str(epoch_ms(NOW - age)))
    with database.session() as session:
        # A signature is forgotten once it was both signed and received past the retention.
        with session.begin():
            for tag, age in AGES.items():
                remembered = update(CallbackSignature).where(CallbackSignature.nonce == tag)
                session.execute(remembered.values(received_at=NOW - age))
        deleted = purge(session, RetentionPolicy(raw_event_days=DAYS, record_days=0), NOW)
        assert deleted["callback_signatures"] == 1
        assert set(session.scalars(select(CallbackSignature.nonce))) == KEPT


@pytest.mark.parametrize("days", [1, 5, 90])
def test_the_replay_memory_never_forgets_a_signature_the_reader_accepts(
    database: Database, days: int
) -> None:
    """Every signature the reader takes at NOW as within its window (the oldest, to the
    millisecond, and one a few hours inside) is still remembered after a purge at NOW, so the
    same signature with other data is found reused (and kept quarantined); the first one
    outside the window is a `signature_time` suspect, which may be forgotten."""
    oldest = NOW - timedelta(days=days)
    uses = [
        signed_use(ONE, nonce, str(epoch_ms(at)), "SMS_REPORT", "[]")
        for nonce, at in (("oldest", oldest), ("hours-inside", oldest + timedelta(hours=5)))
    ]
    assert [window_suspect(use.timestamp, now=NOW, memory_days=days) for use in uses] == [None] * 2
    assert window_suspect(epoch_ms(oldest) - 1, now=NOW, memory_days=days) is not None
    with database.session() as session:
        with session.begin():
            assert first_uses(session, uses, NOW) == [Verdict.FIRST, Verdict.FIRST]
        purge(session, RetentionPolicy(raw_event_days=days, record_days=0), NOW)
        forged = [replace(use, digest=digest_of("SMS_REPORT", "[{}]")) for use in uses]
        with session.begin():
            assert first_uses(session, forged, NOW) == [Verdict.REUSED, Verdict.REUSED]


def test_a_signature_received_past_the_age_but_signed_inside_it_is_still_remembered(
    database: Database,
) -> None:
    """A triple goes only once its timestamp too is past the age: one first received a day
    outside the memory but signed a day inside it (ahead of its receipt, a suspect then) is
    still found reused after a purge, since the reader now takes its timestamp."""
    signed_at, received = NOW - timedelta(days=DAYS - 1), NOW - timedelta(days=DAYS + 1)
    use = signed_use(ONE, "ahead", str(epoch_ms(signed_at)), "SMS_REPORT", "[]")
    assert window_suspect(use.timestamp, now=NOW, memory_days=DAYS) is None
    with database.session() as session:
        with session.begin():
            assert first_uses(session, [use], received) == [Verdict.FIRST]
        purge(session, RetentionPolicy(raw_event_days=DAYS, record_days=0), NOW)
        forged = replace(use, digest=digest_of("SMS_REPORT", "[{}]"))
        with session.begin():
            assert first_uses(session, [forged], NOW) == [Verdict.REUSED]


def test_a_days_old_signature_replayed_with_other_data_after_a_purge_is_quarantined(
    app: Flask, client: FlaskClient, database: Database
) -> None:
    """The Security section's promise across a retention run: a signature 5 days old, within
    the 90-day memory, replayed with forged data after the clock's purge is kept quarantined as
    `signature_reused`, and its record never reaches the table."""
    signed_at = str(epoch_ms(datetime.now(UTC) - timedelta(days=5)))
    genuine = signed_form(ONE, SECRET, "SMS_REPORT", [report("m1", status=4001)],
                          timestamp=signed_at)  # fmt: skip
    assert client.post("/callbacks/jsms", data=genuine).status_code == 200
    result = app.test_cli_runner().invoke(args=["jsms", "purge"])  # the configured 90 days
    assert result.exit_code == 0, result.output
    forged = genuine | {"data": '[{"msgId":"m1","phone":"13800138000","status":4002,'
                                '"receiveTime":1575015093000}]'}  # fmt: skip
    response = client.post("/callbacks/jsms", data=forged)
    assert response.status_code == 200
    assert response.get_json() == {"stored": 0, "duplicates": 0, "quarantined": 1}
    assert latest_suspicion(database) == "signature_reused"
    with database.session() as session:
        assert session.scalars(select(DeliveryReport.status)).all() == [4001]


def latest_suspicion(database: Database) -> str | None:
    """Why the newest raw event is suspect (None: it is not)."""
    with database.session() as session:
        return session.scalars(select(RawEvent.suspect).order_by(RawEvent.id.desc())).first()


def test_the_callback_window_ends_where_the_configured_replay_memory_ends(
    database_url: str,
) -> None:
    """With RAW_EVENT_RETENTION_DAYS=5, a callback signed a minute inside 5 days is taken and
    still found reused after the purge (kept quarantined); one signed a minute outside is kept
    as a `signature_time` suspect (the window is never longer than the memory)."""
    app = create_app(make_settings(database_url, raw_event_retention_days=5))
    client = app.test_client()
    database = app.extensions["database"]
    try:
        edge = datetime.now(UTC) - timedelta(days=5)
        inside, outside = (
            signed_form(ONE, SECRET, "SMS_REPORT", [report(tag)],
                        timestamp=str(epoch_ms(edge + shift)))  # fmt: skip
            for tag, shift in (("inside", timedelta(minutes=1)), ("outside", -timedelta(minutes=1)))
        )
        assert client.post("/callbacks/jsms", data=inside).get_json()["stored"] == 1
        assert latest_suspicion(database) is None
        kept = client.post("/callbacks/jsms", data=outside)
        assert kept.get_json() == {"stored": 0, "duplicates": 0, "quarantined": 1}
        assert latest_suspicion(database) == "signature_time"
        assert app.test_cli_runner().invoke(args=["jsms", "purge"]).exit_code == 0
        forged = client.post("/callbacks/jsms", data=inside | {"data": json.dumps([report("x")])})
        assert forged.get_json() == {"stored": 0, "duplicates": 0, "quarantined": 1}
        assert latest_suspicion(database) == "signature_reused"
    finally:
        app.extensions["database"].engine.dispose()
