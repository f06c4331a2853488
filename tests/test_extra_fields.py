"""Unknown upstream fields of a report (and a reply) are kept in `extra` and shown by the API."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from flask.testing import FlaskClient

from tests.support import APPS
from tests.wire import report, signed_form

from .api_data import get

EXTRA = {"carrier": "cmcc", "fee": {"count": 2, "units": ["sms"]}, "备注": None}


def post(client: FlaskClient, record_type: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    form = signed_form("app-one", APPS["app-one"], record_type, items)
    response = client.post("/callbacks/jsms", data=form)
    assert response.status_code == 200
    body: dict[str, Any] = response.get_json()
    return body


def test_a_reports_unknown_fields_are_kept_in_extra(client: FlaskClient) -> None:
    post(client, "SMS_REPORT", [{**report("m1"), **EXTRA}, report("m2")])
    items = get(client, "/reports").get_json()["items"]
    assert [(i["msg_id"], i["extra"]) for i in items] == [("m1", EXTRA), ("m2", None)]
    # A walk filtered on `delivered` reads `extra` by primary key, after its LIMIT.
    items = get(client, "/reports", delivered="true", limit="1").get_json()["items"]
    assert [(i["msg_id"], i["extra"]) for i in items] == [("m1", EXTRA)]

    rows = list(
        csv.DictReader(io.StringIO(get(client, "/reports", format="csv").get_data(as_text=True)))
    )
    assert json.loads(rows[0]["extra"]) == EXTRA
    assert rows[1]["extra"] == ""


def test_a_walk_on_delivered_reads_each_reports_own_extra(client: FlaskClient) -> None:
    """The late read of `extra` (by primary key, after the LIMIT) joins each row to itself: a
    sub-select matching another row, or every row, would show one report's extras on another's."""
    post(client, "SMS_REPORT", [{**report("m1"), "n": 1}, {**report("m2"), "n": 2}, report("m3")])
    items = get(client, "/reports", delivered="true").get_json()["items"]
    assert [(i["msg_id"], i["extra"]) for i in items] == [
        ("m1", {"n": 1}),
        ("m2", {"n": 2}),
        ("m3", None),
    ]


def test_a_report_that_replaces_the_row_brings_its_own_extra(client: FlaskClient) -> None:
    post(client, "SMS_REPORT", [{**report("m1", status=4002, receive_time=1575015093000), **EXTRA}])
    # An identical repeat with other extras leaves the row as it is.
    repeat = post(
        client, "SMS_REPORT", [{**report("m1", status=4002, receive_time=1575015093000), "x": 1}]
    )
    assert repeat["duplicates"] == 1
    assert get(client, "/reports").get_json()["items"][0]["extra"] == EXTRA
    # A later report ranks higher: the row, extras included, becomes that report's.
    post(client, "SMS_REPORT", [{**report("m1", receive_time=1575015094000), "carrier": "cucc"}])
    [item] = get(client, "/reports").get_json()["items"]
    assert (item["status"], item["extra"]) == (4001, {"carrier": "cucc"})
    # An older one is not kept, nor are its extras.
    post(client, "SMS_REPORT", [{**report("m1", receive_time=1575015000000), "carrier": "old"}])
    assert get(client, "/reports").get_json()["items"][0]["extra"] == {"carrier": "cucc"}


def test_a_replys_unknown_fields_are_shown_too(client: FlaskClient) -> None:
    item = {"phone": "13800138000", "content": "hi", "replyTime": 1575015093000, "sign": "x"}
    post(client, "SMS_REPLY", [item])
    assert get(client, "/replies").get_json()["items"][0]["extra"] == {"sign": "x"}


def test_a_report_whose_extras_nest_too_deep_is_quarantined_not_its_neighbour(
    client: FlaskClient,
) -> None:
    """As for replies (tests/test_raw_first.py): walk the depths near the recursion limit."""
    quarantined = 0
    for depth in range(900, 1000, 4):
        nested = "[" * depth + "]" * depth
        deep = json.dumps(report(f"d{depth}"))[:-1] + f', "x": {nested}}}'
        data = f"[{deep}, {json.dumps(report(f'n{depth}'))}]"
        form = signed_form("app-one", APPS["app-one"], "SMS_REPORT", data)
        response = client.post("/callbacks/jsms", data=form)
        assert response.status_code == 200
        body = response.get_json()
        if body == {"stored": 0, "duplicates": 0, "quarantined": 1}:
            continue  # `data` itself too deep to read: the callback is kept whole, unread
        assert body["stored"] + body["quarantined"] == 2 and body["stored"] >= 1
        quarantined += body["quarantined"]
    assert quarantined > 0
