"""The edges against someone who tries: signed cursors, defanged CSV in every column, echostr,
nosniff on every response."""

from __future__ import annotations

import base64
import csv
import io
import json

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.store.db import Database

from .api_data import get, reply, report, store
from .conftest import make_settings

FORMULAS = ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"]


def test_a_hand_edited_cursor_is_400_naming_cursor(client: FlaskClient, database: Database) -> None:
    store(database, "app-one", [report(f"m{i}") for i in range(3)])
    cursor = get(client, "/reports", limit=1).get_json()["next_cursor"]
    body, _, mac = cursor.partition(".")
    fields = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    fields["after"] = 0  # rewind: what a cursor's holder might try
    edited = base64.urlsafe_b64encode(json.dumps(fields, separators=(",", ":")).encode())
    for forged in (f"{edited.decode().rstrip('=')}.{mac}", edited.decode().rstrip("=")):
        response = get(client, "/reports", limit=1, cursor=forged)
        assert response.status_code == 400
        assert response.get_json()["error"]["parameter"] == "cursor"
    assert get(client, "/reports", limit=1, cursor=cursor).status_code == 200


def test_a_cursor_from_a_server_with_another_key_is_400(
    database_url: str, database: Database
) -> None:
    store(database, "app-one", [report(f"m{i}") for i in range(3)])
    apps = [create_app(make_settings(database_url, secret_key=k)) for k in ("k1" * 16, "k2" * 16)]
    try:
        cursor = get(apps[0].test_client(), "/reports", limit=1).get_json()["next_cursor"]
        assert get(apps[0].test_client(), "/reports", limit=1, cursor=cursor).status_code == 200
        response = get(apps[1].test_client(), "/reports", limit=1, cursor=cursor)
        assert response.status_code == 400
        assert response.get_json()["error"]["parameter"] == "cursor"
    finally:
        for app in apps:
            app.extensions["database"].engine.dispose()


def test_csv_defangs_formulas_in_every_text_column(client: FlaskClient, database: Database) -> None:
    store(database, "@app", [report(f, phone=f) for f in FORMULAS])
    store(database, "=app", [reply(f, f) for f in FORMULAS])
    for path, columns in (
        ("/reports", ("app_key", "msg_id", "phone")),
        ("/replies", ("app_key", "phone", "content")),
    ):
        text = get(client, path, format="csv").get_data(as_text=True)
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        assert len(rows) == len(FORMULAS)
        for row in rows:
            for column in columns:
                assert row[column].startswith("'"), (column, row[column])


def test_csv_leaves_ordinary_values_alone(client: FlaskClient, database: Database) -> None:
    store(database, "app-one", [report("m1", phone="13800000001")])
    text = get(client, "/reports", format="csv").get_data(as_text=True)
    [row] = list(csv.DictReader(io.StringIO(text, newline="")))
    assert (row["app_key"], row["msg_id"], row["phone"]) == ("app-one", "m1", "13800000001")


@pytest.mark.parametrize("echostr", ["<script>alert(1)</script>", "a" * 65, "a b", "é", "a/b", ""])
def test_an_echostr_that_is_not_one_is_400(client: FlaskClient, echostr: str) -> None:
    response = client.get("/callbacks/jsms", query_string={"echostr": echostr})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_echostr"


@pytest.mark.parametrize("echostr", ["a1B2c3D4", "A-b_9", "x" * 64])
def test_an_echostr_that_looks_like_one_is_answered(client: FlaskClient, echostr: str) -> None:
    response = client.get("/callbacks/jsms", query_string={"echostr": echostr})
    assert (response.status_code, response.get_data(as_text=True)) == (200, echostr)


@pytest.mark.parametrize(
    "path",
    ["/callbacks/jsms?echostr=abc", "/callbacks/jsms?echostr=%3C", "/healthz", "/readyz",
     "/metrics", "/api/v1/openapi.json", "/api/v1/reports", "/nowhere", "/status"],
)  # fmt: skip
def test_every_response_says_nosniff(app: Flask, path: str) -> None:
    response = app.test_client().get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
