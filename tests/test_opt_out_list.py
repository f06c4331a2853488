"""The list of phones opted out now: `GET /api/v1/opt-outs`, its filters, pages and CSV."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import text

from app.store.db import Database

from .api_data import get, walk
from .test_opt_outs import PHONE, T0, opt_out_cli, reply, send


@pytest.fixture
def opted_out(client: FlaskClient) -> None:
    """Four phones opted out now over two apps and three days; one opted back in."""
    send(
        client, reply("TD", T0, "13800000001"), reply("STOP", T0 + timedelta(days=1), "13800000002")
    )
    send(client, reply("退订", T0 + timedelta(days=2), "13800000003"), app_key="app-two")
    send(
        client,
        reply("N", T0, "13800000004"),
        reply("START", T0 + timedelta(hours=1), "13800000004"),
    )
    send(client, reply("T", T0 + timedelta(days=2), "13800000005"))


@pytest.mark.parametrize(
    ("params", "phones"),
    [
        ({}, ["13800000001", "13800000002", "13800000003", "13800000005"]),
        ({"app_key": "app-two"}, ["13800000003"]),
        ({"app_key": "nobody"}, []),
        ({"since": "2024-05-02"}, ["13800000002", "13800000003", "13800000005"]),
        ({"until": "2024-05-02T08:00:00Z"}, ["13800000001"]),
        ({"app_key": "app-one", "since": "2024-05-03", "until": "2024-05-04"}, ["13800000005"]),
        ({"limit": "1"}, ["13800000001", "13800000002", "13800000003", "13800000005"]),
    ],
)
def test_the_list_holds_the_phones_opted_out_now(
    client: FlaskClient, opted_out: None, params: dict[str, str], phones: list[str]
) -> None:
    items, _ = walk(client, "/opt-outs", **params)
    assert [item["phone"] for item in items] == phones
    assert all(item["opted_out"] is True for item in items)


def test_list_items_and_pages(client: FlaskClient, opted_out: None) -> None:
    first = get(client, "/opt-outs", limit=2).get_json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    assert first["items"][0] == {
        "app_key": "app-one",
        "phone": "13800000001",
        "opted_out": True,
        "since": "2024-05-01T08:00:00Z",
        "keyword": "TD",
        "source": "callback",
        "changed_by": None,
        "reason": None,
    }
    wrong = get(client, "/opt-outs", limit=2, app_key="app-one", cursor=first["next_cursor"])
    assert wrong.status_code == 400
    assert wrong.get_json()["error"]["parameter"] == "cursor"


def test_a_phone_opted_out_again_comes_after_a_resume_cursor(
    client: FlaskClient, opted_out: None
) -> None:
    _, resume = walk(client, "/opt-outs")
    send(client, reply("TD", T0 + timedelta(days=3), "13800000004"))
    items, _ = walk(client, "/opt-outs", cursor=resume)
    assert [item["phone"] for item in items] == ["13800000004"]


def test_the_list_as_csv(client: FlaskClient, opted_out: None, runner: FlaskCliRunner) -> None:
    opt_out_cli(runner, "add", "=13800000009", "--app-key", "app-two", "--reason", "=cmd()")
    response = get(client, "/opt-outs", format="csv", app_key="app-two")
    assert response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert list(rows[0]) == [
        "app_key", "phone", "opted_out", "since", "keyword", "source", "changed_by", "reason"
    ]  # fmt: skip
    assert [(r["phone"], r["keyword"], r["source"], r["reason"]) for r in rows] == [
        ("13800000003", "退订", "callback", ""),
        ("'=13800000009", "", "manual", "'=cmd()"),
    ]
    assert rows[0]["opted_out"] == "true"


@pytest.mark.parametrize(
    ("params", "parameter"),
    [({"since": "yesterday"}, "since"), ({"phone": PHONE}, "phone"), ({"limit": "0"}, "limit")],
)
def test_a_bad_list_parameter_is_a_400(
    client: FlaskClient, params: dict[str, str], parameter: str
) -> None:
    response = get(client, "/opt-outs", **params)
    assert response.status_code == 400
    assert response.get_json()["error"]["parameter"] == parameter


def test_the_bi_view_holds_the_phones_opted_out_now(
    opted_out: None, runner: FlaskCliRunner, database: Database
) -> None:
    opt_out_cli(runner, "add", PHONE, "--app-key", "app-one", "--reason", "letter", "--by", "bob")
    with database.session() as session:
        rows = session.execute(
            text(
                "SELECT app_key, phone, keyword, source, changed_by, reason"
                " FROM current_opt_outs ORDER BY change_id"
            )
        ).all()
    assert [tuple(row) for row in rows] == [
        ("app-one", "13800000001", "TD", "callback", None, None),
        ("app-one", "13800000002", "STOP", "callback", None, None),
        ("app-two", "13800000003", "退订", "callback", None, None),
        ("app-one", "13800000005", "T", "callback", None, None),
        ("app-one", PHONE, None, "manual", "bob", "letter"),
    ]
