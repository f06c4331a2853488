"""What is quarantined is visible and releasable: `GET /api/v1/quarantine` lists it (keyset
pages, filters, bounded excerpts), `jsms trust` stores the records of the suspect callbacks an
operator checked, and `jsms reprocess` leaves them suspect. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from typing import Any

from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select

from app.store.db import Database
from app.store.models import DeliveryReport, RawEvent, Reply, ReviewResult
from tests.support import APPS, TOKEN, row_count
from tests.wire import report, signed_form

ONE, SECRET = "app-one", APPS["app-one"]
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REPLY = {"phone": "13800138000", "content": "hello", "replyTime": 1575015093000}
TEMPLATE = {"tempId": 1234, "status": 2, "refuseReason": "bad words"}


def shared_triple_sample(client: FlaskClient) -> None:
    """JSMS's CallbackTest: a reply, a report and a template review under one triple."""
    reply = signed_form(ONE, SECRET, "SMS_REPLY", [REPLY])
    triple = {k: reply[k] for k in ("nonce", "timestamp", "signature")}
    for form in (
        reply,
        triple | {"type": "SMS_REPORT", "data": json.dumps([report("m1")])},
        triple | {"type": "SMS_TEMPLATE", "data": json.dumps(TEMPLATE)},
    ):
        assert client.post("/callbacks/jsms", data=form).status_code == 200


def listed(client: FlaskClient, **query: str) -> dict[str, Any]:
    response = client.get("/api/v1/quarantine", query_string=query, headers=AUTH)
    assert response.status_code == 200, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    return body


def test_quarantine_lists_suspects_and_unreadable_records_with_filters(
    client: FlaskClient,
) -> None:
    shared_triple_sample(client)
    odd = signed_form(ONE, SECRET, "SMS_REPORT", [{"msgId": "x"}])  # a record of the wrong shape
    assert client.post("/callbacks/jsms", data=odd).get_json()["quarantined"] == 1
    ahead = str(int(time.time() * 1000) + 2 * 3_600_000)
    late = signed_form(ONE, SECRET, "SMS_REPORT", [report("m9")], timestamp=ahead)
    assert client.post("/callbacks/jsms", data=late).get_json()["quarantined"] == 1

    everything = listed(client)["items"]
    assert [(i["type"], i["suspect"]) for i in everything] == [
        ("SMS_REPORT", "signature_reused"),
        ("SMS_TEMPLATE", "signature_reused"),
        ("SMS_REPORT", None),
        ("SMS_REPORT", "signature_time"),
    ]
    first = everything[0]
    assert set(first) >= {"id", "app_key", "source", "type", "received_at", "reason"}
    assert (first["app_key"], first["source"]) == (ONE, "callback")
    assert first["received_at"].endswith("Z")
    assert first["reason"] == (
        "signature_reused: this nonce/timestamp/signature was first used for other data "
        "(JSMS signs neither type nor data); kept raw until an operator runs jsms trust"
    )  # what the operator acts on
    assert json.loads(first["payload_excerpt"]) == [report("m1")]
    assert "ahead of the server's clock" in everything[3]["reason"]
    assert everything[3]["reason"].endswith(
        "; if JSMS's clock and the server's disagree, correct the server's clock (NTP), then "
        "jsms trust this event"
    )

    def reasons(reason: str) -> list[str | None]:
        return [i["suspect"] for i in listed(client, reason=reason)["items"]]

    assert reasons("signature_reused") == ["signature_reused", "signature_reused"]
    assert reasons("signature_time") == ["signature_time"]
    assert reasons("records") == [None]
    assert listed(client, app_key="app-two")["items"] == []
    assert listed(client, since="2000-01-01T00:00:00Z", until="2001-01-01")["items"] == []
    # Each bound holds on its own too.
    assert listed(client, since="2100-01-01T00:00:00Z")["items"] == []
    assert listed(client, until="2000-01-01")["items"] == []


def test_quarantine_pages_follow_the_cursor_and_excerpts_are_bounded(
    client: FlaskClient,
) -> None:
    big = json.dumps([{"msgId": "x" * 900_000}])
    for _ in range(3):
        form = signed_form(ONE, SECRET, "SMS_REPORT", big)
        assert client.post("/callbacks/jsms", data=form).get_json()["quarantined"] == 1
    seen: list[int] = []
    page = listed(client, limit="2")
    while True:
        for item in page["items"]:
            assert len(item["payload_excerpt"]) == 1000
            assert item["payload_length"] == len(big)
        seen += [i["id"] for i in page["items"]]
        if page["next_cursor"] is None:
            break
        page = listed(client, limit="2", cursor=page["next_cursor"])
    assert len(seen) == 3 and seen == sorted(set(seen))


def test_quarantine_needs_a_token_and_names_a_bad_filter(client: FlaskClient) -> None:
    assert client.get("/api/v1/quarantine").status_code == 401
    bad = client.get("/api/v1/quarantine?reason=forged", headers=AUTH)
    assert bad.status_code == 400
    assert bad.get_json()["error"]["parameter"] == "reason"


def test_trust_stores_what_an_operator_checked_and_reprocess_does_not(
    client: FlaskClient, runner: FlaskCliRunner, database: Database
) -> None:
    shared_triple_sample(client)
    suspect_ids = [i["id"] for i in listed(client, reason="signature_reused")["items"]]
    assert len(suspect_ids) == 2

    reprocessed = runner.invoke(args=["jsms", "reprocess"])
    assert reprocessed.exit_code == 0, reprocessed.output
    assert row_count(database, DeliveryReport) == 0 and row_count(database, ReviewResult) == 0

    trusted = runner.invoke(args=["jsms", "trust", *map(str, suspect_ids)])
    assert trusted.exit_code == 0, trusted.output
    assert trusted.output.splitlines() == [
        f"raw event {suspect_ids[0]} (SMS_REPORT, was signature_reused): 1 records stored, "
        "0 duplicates, 0 still quarantined",
        f"raw event {suspect_ids[1]} (SMS_TEMPLATE, was signature_reused): 1 records stored, "
        "0 duplicates, 0 still quarantined",
    ]
    assert row_count(database, DeliveryReport) == 1 and row_count(database, ReviewResult) == 1
    assert row_count(database, Reply) == 1
    assert listed(client)["items"] == []
    with database.session() as session:
        owners = session.scalars(select(DeliveryReport.raw_event_id)).all()
    assert owners == [suspect_ids[0]]

    again = runner.invoke(args=["jsms", "trust", str(suspect_ids[0])])
    assert again.exit_code == 1
    assert "not a suspect callback" in again.output
    assert row_count(database, RawEvent) == 3
