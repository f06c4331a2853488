"""The query API as the contract names it: auth, filters, bad values, pages, CSV, stats, sync."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
from flask.testing import FlaskClient

from app import create_app
from app.store.db import Database
from app.store.models import SyncState
from tests.support import TOKEN, make_settings

from .api_data import AUTH, at, get, reply, report, store, walk

ENDPOINTS = ["/reports", "/replies", "/stats/delivery", "/sync"]
SECRET_PHONE = "13912345678"


@pytest.fixture
def reports(database: Database) -> None:
    """Four reports over two apps, two sources, three statuses and three days."""
    store(database, "app-one", [report("m1", "13800000001", 4001, "2024-05-01 08:00")])
    store(database, "app-one", [report("m2", "13800000002", 4002, "2024-05-01 09:30")], "pull")
    store(database, "app-two", [report("m3", "13800000001", 4004, "2024-05-02 23:59:59")])
    store(database, "app-two", [report("m1", "13800000003", 4001, "2024-05-03 00:00")], "pull")


# --- auth -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    "header", [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer", f"bearer  {TOKEN}x", "Bearer \xe9"]
)
def test_every_endpoint_refuses_a_missing_or_wrong_token(
    client: FlaskClient, path: str, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = client.get(f"/api/v1{path}", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_configured_token_gets_in(client: FlaskClient, path: str) -> None:
    assert get(client, path).status_code == 200


def test_any_of_several_tokens_gets_in(database_url: str) -> None:
    app = create_app(make_settings(database_url, api_tokens=("first", "second")))
    response = app.test_client().get("/api/v1/sync", headers={"Authorization": "Bearer second"})
    assert response.status_code == 200
    app.extensions["database"].engine.dispose()


@pytest.mark.parametrize("path", ENDPOINTS)
def test_no_configured_tokens_means_nobody_gets_in(database_url: str, path: str) -> None:
    app = create_app(make_settings(database_url, api_tokens=()))
    client = app.test_client()
    for header in (AUTH, {"Authorization": "Bearer "}, {}):
        assert client.get(f"/api/v1{path}", headers=header).status_code == 401
    app.extensions["database"].engine.dispose()


def test_phones_are_not_echoed_in_errors(client: FlaskClient) -> None:
    response = get(client, "/reports", phone=SECRET_PHONE + "x" * 40)
    assert response.status_code == 400
    assert SECRET_PHONE not in response.get_data(as_text=True)
    unauthorized = client.get("/api/v1/reports", query_string={"phone": SECRET_PHONE})
    assert SECRET_PHONE not in unauthorized.get_data(as_text=True)


def test_wrong_method_is_a_json_405(client: FlaskClient) -> None:
    response = client.post("/api/v1/reports", headers=AUTH)
    assert response.status_code == 405
    assert "error" in response.get_json()


# --- report items and filters -----------------------------------------------------------------


def test_report_items_carry_the_contract_fields(client: FlaskClient, reports: None) -> None:
    body = get(client, "/reports", msg_id="m2").get_json()
    assert body["next_cursor"] is None
    [item] = body["items"]
    assert list(item) == [
        "id",
        "app_key",
        "msg_id",
        "phone",
        "status",
        "status_text",
        "delivered",
        "received_at",
        "source",
        "ingested_at",
        "extra",
    ]
    assert item["extra"] is None
    assert item["app_key"] == "app-one"
    assert item["phone"] == "13800000002"
    assert item["status"] == 4002
    assert item["status_text"] == "number is on the carrier's blacklist"
    assert item["delivered"] is False
    assert item["received_at"] == "2024-05-01T09:30:00Z"
    assert item["source"] == "pull"
    assert item["ingested_at"].endswith("Z")
    datetime.fromisoformat(item["ingested_at"])


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["app-one/m1", "app-one/m2", "app-two/m3", "app-two/m1"]),
        ({"app_key": "app-two"}, ["app-two/m3", "app-two/m1"]),
        ({"app_key": "nobody"}, []),
        ({"msg_id": "m1"}, ["app-one/m1", "app-two/m1"]),
        ({"msg_id": "m1", "app_key": "app-two"}, ["app-two/m1"]),
        ({"phone": "13800000001"}, ["app-one/m1", "app-two/m3"]),
        ({"status": "4001"}, ["app-one/m1", "app-two/m1"]),
        ({"status": "4002,4004"}, ["app-one/m2", "app-two/m3"]),
        ({"status": "4002, 4100"}, ["app-one/m2"]),
        ({"delivered": "true"}, ["app-one/m1", "app-two/m1"]),
        ({"delivered": "false"}, ["app-one/m2", "app-two/m3"]),
        ({"source": "pull"}, ["app-one/m2", "app-two/m1"]),
        ({"source": "callback"}, ["app-one/m1", "app-two/m3"]),
        ({"since": "2024-05-01T09:30:00Z"}, ["app-one/m2", "app-two/m3", "app-two/m1"]),
        ({"until": "2024-05-01T09:30:00Z"}, ["app-one/m1"]),  # until is exclusive
        ({"since": "2024-05-02", "until": "2024-05-03"}, ["app-two/m3"]),
        ({"since": "2024-05-03T08:00:00+08:00"}, ["app-two/m1"]),  # an offset is honoured
        (
            {"since": str(int(at("2024-05-02 00:00").timestamp() * 1000))},
            ["app-two/m3", "app-two/m1"],
        ),
        ({"since": "2024-05-01", "until": "2024-05-01"}, []),  # an empty range
        ({"app_key": "app-one", "delivered": "false", "source": "pull"}, ["app-one/m2"]),
    ],
)
def test_report_filters(
    client: FlaskClient, reports: None, params: dict[str, str], expected: list[str]
) -> None:
    response = get(client, "/reports", **params)
    assert response.status_code == 200, response.get_json()
    items = response.get_json()["items"]
    assert [f"{i['app_key']}/{i['msg_id']}" for i in items] == expected
    assert [i["id"] for i in items] == sorted(i["id"] for i in items)


@pytest.mark.parametrize(
    ("path", "param", "value"),
    [
        ("/reports", "limit", "0"),
        ("/reports", "limit", "1001"),
        ("/reports", "limit", "ten"),
        ("/reports", "limit", "-1"),
        ("/reports", "status", "delivered"),
        ("/reports", "status", ""),
        ("/reports", "status", "4001,"),
        ("/reports", "status", "99999999999"),
        ("/reports", "delivered", "yes"),
        ("/reports", "delivered", "True"),
        ("/reports", "source", "sms"),
        ("/reports", "since", "yesterday"),
        ("/reports", "since", "2024-13-01"),
        ("/reports", "until", "99999999999999999"),
        ("/reports", "app_key", ""),
        ("/reports", "app_key", "k" * 65),
        ("/reports", "msg_id", "m" * 65),
        ("/reports", "phone", "1" * 33),
        ("/reports", "cursor", "not-a-cursor"),
        ("/reports", "cursor", "eyJ2IjoxfQ"),  # {"v":1}: valid base64 and JSON, not ours
        ("/reports", "format", "xml"),
        ("/reports", "colour", "blue"),  # unknown parameters are refused
        ("/replies", "limit", "1001"),
        ("/replies", "since", "soon"),
        ("/replies", "status", "4001"),  # replies have no status
        ("/replies", "cursor", "%%%"),
        ("/stats/delivery", "bucket", "week"),
        ("/stats/delivery", "since", "noon"),
        ("/stats/delivery", "limit", "10"),
        ("/sync", "app_key", "app-one"),
    ],
)
def test_bad_values_are_a_400_naming_the_parameter(
    client: FlaskClient, path: str, param: str, value: str
) -> None:
    response = get(client, path, **{param: value})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_parameter"
    assert error["parameter"] == param
    assert param in error["message"]


def test_until_before_since_is_a_400_naming_until(client: FlaskClient) -> None:
    response = get(client, "/reports", since="2024-05-02", until="2024-05-01")
    assert response.get_json()["error"]["parameter"] == "until"


def test_a_repeated_parameter_is_a_400(client: FlaskClient) -> None:
    response = client.get("/api/v1/reports?app_key=a&app_key=b", headers=AUTH)
    assert response.status_code == 400
    assert response.get_json()["error"]["parameter"] == "app_key"


# --- pagination -------------------------------------------------------------------------------


def test_cursor_walks_every_record_once_in_id_order(
    client: FlaskClient, database: Database
) -> None:
    for n in range(5):
        store(database, "app-one", [report(f"m{n}-{i}", f"1380000{i:04d}") for i in range(5)])
    pages = []
    params: dict[str, object] = {"limit": 10}
    while True:
        body = get(client, "/reports", **params).get_json()
        pages.append([i["id"] for i in body["items"]])
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert [len(p) for p in pages] == [10, 10, 5]
    ids = [i for p in pages for i in p]
    assert ids == sorted(set(ids))
    assert len(ids) == 25


def test_an_exactly_full_last_page_has_no_next_cursor(
    client: FlaskClient, database: Database
) -> None:
    store(database, "app-one", [report(f"m{i}") for i in range(4)])
    body = get(client, "/reports", limit=4).get_json()
    assert len(body["items"]) == 4
    assert body["next_cursor"] is None


def test_resume_cursor_picks_up_records_stored_after_the_walk(
    client: FlaskClient, database: Database
) -> None:
    store(database, "app-one", [report("early")])
    items, resume = walk(client, "/reports", app_key="app-one")
    assert [i["msg_id"] for i in items] == ["early"]
    store(database, "app-one", [report("late")])
    later, _ = walk(client, "/reports", app_key="app-one", cursor=resume)
    assert [i["msg_id"] for i in later] == ["late"]


def test_a_cursor_only_works_with_the_filters_it_was_issued_for(
    client: FlaskClient, database: Database
) -> None:
    store(database, "app-one", [report(f"m{i}") for i in range(3)])
    cursor = get(client, "/reports", limit=1, app_key="app-one").get_json()["next_cursor"]
    assert get(client, "/reports", limit=1, app_key="app-one", cursor=cursor).status_code == 200
    response = get(client, "/reports", limit=1, app_key="app-two", cursor=cursor)
    assert response.status_code == 400
    assert response.get_json()["error"]["parameter"] == "cursor"
    tampered = cursor[:-2] + ("A" if cursor[-2] != "A" else "B") + cursor[-1]
    assert get(client, "/reports", app_key="app-one", cursor=tampered).status_code == 400


# --- replies ----------------------------------------------------------------------------------


@pytest.fixture
def replies(database: Database) -> None:
    """Three replies over two apps and two days."""
    store(database, "app-one", [reply("13800000001", "STOP", "2024-05-01 10:00")])
    store(database, "app-one", [reply("13800000002", "yes", "2024-05-02 10:00")], "pull")
    store(database, "app-two", [reply("13800000001", "=1+1", "2024-05-02 11:00")])


def test_reply_items_carry_the_contract_fields(client: FlaskClient, replies: None) -> None:
    item = get(client, "/replies", app_key="app-one").get_json()["items"][0]
    assert list(item) == [
        "id",
        "app_key",
        "phone",
        "content",
        "replied_at",
        "source",
        "ingested_at",
        "extra",
    ]
    assert item["extra"] is None
    assert item["content"] == "STOP"
    assert item["replied_at"] == "2024-05-01T10:00:00Z"
    assert item["source"] == "callback"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["STOP", "yes", "=1+1"]),
        ({"app_key": "app-two"}, ["=1+1"]),
        ({"phone": "13800000001"}, ["STOP", "=1+1"]),
        ({"since": "2024-05-02"}, ["yes", "=1+1"]),
        ({"until": "2024-05-02T10:00:00Z"}, ["STOP"]),
        ({"since": "2024-05-02T10:00:00Z", "until": "2024-05-02T11:00:00Z"}, ["yes"]),
        ({"limit": "2"}, ["STOP", "yes"]),
    ],
)
def test_reply_filters(
    client: FlaskClient, replies: None, params: dict[str, str], expected: list[str]
) -> None:
    body = get(client, "/replies", **params).get_json()
    assert [i["content"] for i in body["items"]] == expected


def test_replies_paginate(client: FlaskClient, replies: None) -> None:
    items, _ = walk(client, "/replies", limit=1)
    assert [i["content"] for i in items] == ["STOP", "yes", "=1+1"]


# --- CSV --------------------------------------------------------------------------------------


def _csv_rows(response_text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response_text)))


@pytest.mark.parametrize(
    "how", [{"params": {"format": "csv"}}, {"headers": {"Accept": "text/csv"}}]
)
def test_reports_as_csv_stream_every_match(
    client: FlaskClient, database: Database, how: dict[str, dict[str, str]]
) -> None:
    store(database, "app-one", [report(f"m{i:04d}", status=4001 + i % 2) for i in range(2500)])
    store(database, "app-two", [report("other")])
    response = get(
        client,
        "/reports",
        headers=how.get("headers"),
        app_key="app-one",
        limit=10,
        **how.get("params", {}),
    )
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.is_streamed
    assert response.headers["Content-Disposition"] == 'attachment; filename="reports.csv"'
    text = response.get_data(as_text=True)
    assert text.splitlines()[0] == (
        "id,app_key,msg_id,phone,status,status_text,delivered,received_at,source,ingested_at,extra"
    )
    rows = _csv_rows(text)
    assert len(rows) == 2500  # CSV ignores limit: the whole export
    assert [r["msg_id"] for r in rows] == [f"m{i:04d}" for i in range(2500)]
    assert rows[0]["delivered"] == "true" and rows[1]["delivered"] == "false"
    assert rows[0]["received_at"] == "2024-05-01T08:00:00Z"
    assert rows[1]["status_text"] == "number is on the carrier's blacklist"


def test_csv_filters_and_cursor_apply(client: FlaskClient, reports: None) -> None:
    first = get(client, "/reports", limit=1).get_json()
    rows = _csv_rows(
        get(client, "/reports", format="csv", cursor=first["next_cursor"]).get_data(as_text=True)
    )
    assert [r["msg_id"] for r in rows] == ["m2", "m3", "m1"]
    rows = _csv_rows(
        get(client, "/reports", format="csv", delivered="false").get_data(as_text=True)
    )
    assert [r["msg_id"] for r in rows] == ["m2", "m3"]


def test_replies_as_csv_defuse_formulas(client: FlaskClient, replies: None) -> None:
    response = get(client, "/replies", format="csv")
    rows = _csv_rows(response.get_data(as_text=True))
    assert list(rows[0]) == [
        "id",
        "app_key",
        "phone",
        "content",
        "replied_at",
        "source",
        "ingested_at",
        "extra",
    ]
    assert [r["content"] for r in rows] == ["STOP", "yes", "'=1+1"]


def test_csv_with_a_bad_parameter_is_still_a_json_400(client: FlaskClient) -> None:
    response = get(client, "/reports", format="csv", limit="x")
    assert response.status_code == 400
    assert response.get_json()["error"]["parameter"] == "limit"


# --- stats ------------------------------------------------------------------------------------


@pytest.fixture
def day_of_reports(database: Database) -> None:
    """app-one: 08:xx 3 reports (2 delivered), 09:xx 1 failed, next day 1 delivered; app-two 1."""
    store(
        database,
        "app-one",
        [
            report("a", when="2024-05-01 08:00"),
            report("b", when="2024-05-01 08:59:59"),
            report("c", status=4002, when="2024-05-01 08:30"),
            report("d", status=4004, when="2024-05-01 09:00"),
            report("e", when="2024-05-02 00:00"),
        ],
    )
    store(database, "app-two", [report("f", status=4100, when="2024-05-01 23:59:59")])


def test_daily_stats(client: FlaskClient, day_of_reports: None) -> None:
    body = get(client, "/stats/delivery", app_key="app-one").get_json()
    assert body["items"] == [
        {
            "start": "2024-05-01T00:00:00+08:00",  # BUSINESS_TIMEZONE by default
            "total": 4,
            "delivered": 2,
            "failed": 2,
            "delivery_rate": 0.5,
            "by_status": {"4001": 2, "4002": 1, "4004": 1},
        },
        {
            "start": "2024-05-02T00:00:00+08:00",
            "total": 1,
            "delivered": 1,
            "failed": 0,
            "delivery_rate": 1.0,
            "by_status": {"4001": 1},
        },
    ]


def test_hourly_stats_in_a_range(client: FlaskClient, day_of_reports: None) -> None:
    body = get(
        client,
        "/stats/delivery",
        bucket="hour",
        tz="UTC",
        since="2024-05-01T08:00:00Z",
        until="2024-05-02",
    ).get_json()
    assert [
        (b["start"], b["total"], b["delivered"], b["delivery_rate"]) for b in body["items"]
    ] == [
        ("2024-05-01T08:00:00Z", 3, 2, 0.6667),
        ("2024-05-01T09:00:00Z", 1, 0, 0.0),
        ("2024-05-01T23:00:00Z", 1, 0, 0.0),
    ]
    assert body["items"][2]["by_status"] == {"4100": 1}


def test_stats_of_an_empty_range_are_empty(client: FlaskClient, day_of_reports: None) -> None:
    assert get(client, "/stats/delivery", since="2030-01-01").get_json()["items"] == []
    assert get(client, "/stats/delivery", app_key="nobody").get_json()["items"] == []


# --- sync -------------------------------------------------------------------------------------


def test_sync_lists_configured_apps_never_attempted(client: FlaskClient) -> None:
    items = get(client, "/sync").get_json()["items"]
    assert [(i["app_key"], i["kind"], i["mode"]) for i in items] == [
        ("app-one", "reply", "pull"),
        ("app-one", "report", "pull"),
        ("app-two", "reply", "pull"),
        ("app-two", "report", "pull"),
    ]
    assert all(i["last_attempt_at"] is None and i["configured"] for i in items)


def test_sync_shows_stored_state_with_error_meaning(
    client: FlaskClient, database: Database
) -> None:
    with database.session() as session:
        session.add(
            SyncState(
                app_key="app-one",
                kind="report",
                mode="callback",
                last_attempt_at=datetime(2024, 5, 1, 8, 0, tzinfo=UTC),
                last_error_code=50202,
                last_error_message="pull not allow",
                consecutive_failures=1,
                records_pulled=42,
            )
        )
        session.add(
            SyncState(
                app_key="retired",
                kind="reply",
                mode="paused",
                consecutive_failures=0,
                records_pulled=0,
            )
        )
        session.commit()
    items = {(i["app_key"], i["kind"]): i for i in get(client, "/sync").get_json()["items"]}
    assert len(items) == 5
    state = items[("app-one", "report")]
    assert state["mode"] == "callback"
    assert state["last_attempt_at"] == "2024-05-01T08:00:00Z"
    assert state["last_error_code"] == 50202
    assert state["last_error_message"] == "pull not allow"
    assert state["last_error_text"].startswith("callback mode: JSMS posts this app's receipts")
    assert "jsms resume app-one" in state["last_error_fix"]
    assert state["records_pulled"] == 42
    assert items[("retired", "reply")]["configured"] is False
