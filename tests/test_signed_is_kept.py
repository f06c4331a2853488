"""Signed is kept: a correctly signed callback is committed raw in every case but the database
being unavailable. What the signature cannot vouch for (another payload under a used triple, a
timestamp outside the window) is kept quarantined, never stored in the tables by itself; one
triple keeps at most 16 payloads, and every refusal of a signed callback is counted. Through
HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from app import create_app
from app.jsms.signature import sign
from app.store.db import Database
from app.store.models import (
    DeliveryReport,
    RawEvent,
    RefusedCallback,
    Reply,
    ReviewResult,
    SignatureReuse,
)
from app.store.replay import MAX_PAYLOADS_PER_SIGNATURE
from tests.support import APPS, make_settings, row_count, sample
from tests.wire import report, signed_form

ONE, SECRET = "app-one", APPS["app-one"]
REPLY = {"phone": "13800138000", "content": "hello", "replyTime": 1575015093000}
TEMPLATE = {"tempId": 1234, "status": 2, "refuseReason": "bad words"}


def post(client: FlaskClient, form: dict[str, str]):  # type: ignore[no-untyped-def]
    return client.post("/callbacks/jsms", data=form)


def suspects(database: Database) -> list[tuple[str, str | None]]:
    with database.session() as session:
        rows = session.execute(select(RawEvent.type, RawEvent.suspect).order_by(RawEvent.id)).all()
    return [(t, s) for t, s in rows]


def refusals(database: Database, reason: str) -> int:
    with database.session() as session:
        counts = session.scalars(
            select(RefusedCallback.refusals).where(RefusedCallback.reason == reason)
        ).all()
    return sum(counts)


def test_jsms_shared_triple_sample_is_kept_whole(client: FlaskClient, database: Database) -> None:
    """JSMS's CallbackTest posts a reply, a report and a template review under one
    nonce/timestamp/signature: three 200s; the first is stored, the other two kept raw and
    quarantined as signature_reused, none of their records in the tables."""
    reply = signed_form(ONE, SECRET, "SMS_REPLY", [REPLY])
    triple = {k: reply[k] for k in ("nonce", "timestamp", "signature")}
    report_form = triple | {"type": "SMS_REPORT", "data": json.dumps([report("m1")])}
    template_form = triple | {"type": "SMS_TEMPLATE", "data": json.dumps(TEMPLATE)}
    answers = [post(client, form) for form in (reply, report_form, template_form)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.get_json() for a in answers] == [
        {"stored": 1, "duplicates": 0, "quarantined": 0},
        {"stored": 0, "duplicates": 0, "quarantined": 1},
        {"stored": 0, "duplicates": 0, "quarantined": 1},
    ]
    assert suspects(database) == [
        ("SMS_REPLY", None),
        ("SMS_REPORT", "signature_reused"),
        ("SMS_TEMPLATE", "signature_reused"),
    ]
    assert row_count(database, Reply) == 1
    assert row_count(database, DeliveryReport) == 0 and row_count(database, ReviewResult) == 0
    # JSMS retrying any of them changes nothing.
    assert post(client, template_form).get_json() == {
        "stored": 0, "duplicates": 1, "quarantined": 0
    }  # fmt: skip
    assert row_count(database, RawEvent) == 3


def test_one_signature_keeps_16_payloads_and_refuses_the_rest_counted(
    client: FlaskClient, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A flood of 40 payloads under one captured triple: 16 kept (the first stored, 15
    quarantined), 24 refused 401 signature_reused, every refusal counted and logged."""
    caplog.set_level(logging.WARNING, logger="app.store.replay")
    first = signed_form(ONE, SECRET, "SMS_REPORT", [report("m0")])
    before = sample(client.get("/metrics").text, "jsms_callback_signatures_refused_total",
                    reason="flooded")  # fmt: skip
    answers = [post(client, first | {"data": json.dumps([report(f"m{i}")])}) for i in range(40)]
    statuses = [a.status_code for a in answers]
    assert statuses == [200] * MAX_PAYLOADS_PER_SIGNATURE + [401] * 24
    # The refusal JSMS (or whoever holds the signature) reads, whole.
    refused = {
        "code": "signature_reused",
        "message": "this signature already carried as many different callbacks as are kept",
    }
    assert all(a.get_json()["error"] == refused for a in answers[16:])
    assert row_count(database, RawEvent) == 16
    assert row_count(database, RawEvent, RawEvent.suspect == "signature_reused") == 15
    assert row_count(database, SignatureReuse) == 15
    assert row_count(database, DeliveryReport) == 1
    assert refusals(database, "signature_reused") == 24
    after = sample(client.get("/metrics").text, "jsms_callback_signatures_refused_total",
                   reason="flooded")  # fmt: skip
    assert after == before + 24
    assert Counter(r.getMessage() for r in caplog.records if r.name == "app.store.replay") == {
        "callback signature reused with other data: kept, quarantined": 15,
        "callback signature reused past the bound: refused": 24,
    }
    # A retry of a kept payload is still a retry, past the bound too.
    assert post(client, first | {"data": json.dumps([report("m7")])}).status_code == 200
    assert row_count(database, RawEvent) == 16


def test_data_nested_1500_deep_is_kept_whole(client: FlaskClient, database: Database) -> None:
    data = "[" * 1500 + "]" * 1500
    response = post(client, signed_form(ONE, SECRET, "SMS_REPORT", data))
    assert response.get_json() == {"stored": 0, "duplicates": 0, "quarantined": 1}
    with database.session() as session:
        event = session.scalars(select(RawEvent)).one()
    assert event.payload == data and event.suspect is None
    assert "nested deeper than the JSON reader goes" in (event.quarantine_reason or "")


def test_data_up_to_the_body_limit_is_kept(client: FlaskClient, database: Database) -> None:
    """One item of ~1,000,000 characters and a number of 5,000 digits (more than Python
    converts): kept, the item quarantined, 200."""
    data = json.dumps([{"msgId": "x" * 1_000_000}])[:-2] + ', "status": ' + "9" * 5000 + "}]"
    response = post(client, signed_form(ONE, SECRET, "SMS_REPORT", data))
    assert response.get_json() == {"stored": 0, "duplicates": 0, "quarantined": 1}
    assert row_count(database, RawEvent, RawEvent.payload == data) == 1


def test_a_nul_in_the_nonce_is_a_clean_400_counted(client: FlaskClient, database: Database) -> None:
    """PostgreSQL text cannot hold a NUL (it answered 500). A lone surrogate cannot arrive: a
    percent escape that is not UTF-8 stays as written (`read_form`)."""
    nonce = "nul\x00nonce"
    timestamp = signed_form(ONE, SECRET, "SMS_REPORT", [])["timestamp"]
    form = {
        "nonce": nonce, "timestamp": timestamp, "signature": sign(ONE, SECRET, nonce, timestamp),
        "type": "SMS_REPORT", "data": json.dumps([report("m1")]),
    }  # fmt: skip
    response = post(client, form)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_nonce"
    assert row_count(database, RawEvent) == 0
    assert refusals(database, "invalid_nonce") == 1


def test_every_refusal_of_a_signed_callback_is_counted_with_its_reason(
    client: FlaskClient, database: Database
) -> None:
    signed = signed_form(ONE, SECRET, "SMS_REPORT", "{not json")
    assert post(client, signed).status_code == 400
    assert post(client, signed | {"data": ""}).status_code == 400
    assert refusals(database, "invalid_data") == 1
    assert refusals(database, "missing_data") == 1
    unsigned = signed | {"signature": ""}  # a stranger without a signature: not counted
    assert post(client, unsigned).status_code == 401
    assert refusals(database, "missing_signature") == 0


def test_the_bound_holds_across_workers_flooding_at_once(
    database_url: str, database: Database
) -> None:
    """Two apps (two workers, two writers) flood one triple at once: still 16 kept."""
    apps = [create_app(make_settings(database_url)) for _ in range(2)]
    first = signed_form(ONE, SECRET, "SMS_REPORT", [report("m0")])
    forms = [first | {"data": json.dumps([report(f"m{i}")])} for i in range(40)]
    start = threading.Barrier(len(forms))
    statuses: list[int] = []

    def send(n: int) -> None:
        client = apps[n % 2].test_client()
        start.wait()
        statuses.append(client.post("/callbacks/jsms", data=forms[n]).status_code)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(len(forms))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for app in apps:
            app.extensions["database"].engine.dispose()
    assert sorted(statuses) == [200] * 16 + [401] * 24
    assert row_count(database, RawEvent) == 16
