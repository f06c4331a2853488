"""Opt-outs from replies, through HTTP: keyword forms, the newest reply winning whatever the
arrival order, per-app lists, changes by hand with their history, the settings."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select

from app import create_app
from app.jsms.keywords import DEFAULT_KEYWORDS
from app.logs import MaskPhones
from app.store import opt_outs
from app.store.db import Database
from app.store.models import OptOut, OptOutChange, Reply
from tests.support import APPS, make_settings, row_count
from tests.wire import signed_form

from .api_data import get

PHONE = "13800138000"
T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def reply(content: str, at: datetime = T0, phone: str = PHONE, **extra: Any) -> dict[str, Any]:
    """One SMS_REPLY item as JSMS sends it."""
    return {"phone": phone, "content": content, "replyTime": int(at.timestamp() * 1000), **extra}


def send(client: FlaskClient, *items: dict[str, Any], app_key: str = "app-one") -> None:
    """Post the replies as one signed callback; it must be stored."""
    form = signed_form(app_key, APPS[app_key], "SMS_REPLY", list(items))
    response = client.post("/callbacks/jsms", data=form)
    assert response.status_code == 200, response.get_json()


def lookup(client: FlaskClient, phone: str = PHONE, app_key: str = "app-one") -> dict[str, Any]:
    response = get(client, f"/opt-outs/{phone}", app_key=app_key)
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def history(database: Database, phone: str = PHONE) -> list[OptOutChange]:
    with database.session() as session:
        return list(
            session.scalars(
                select(OptOutChange).where(OptOutChange.phone == phone).order_by(OptOutChange.id)
            )
        )


@pytest.mark.parametrize(
    ("content", "keyword"),
    [
        (" 退订 ", "退订"),
        ("ｔｄ", "TD"),
        ("Unsubscribe", "UNSUBSCRIBE"),
        ("\u3000ＳＴＯＰ\n", "STOP"),
        ("r", "R"),
        ("取消", "取消"),
    ],
)
def test_a_reply_that_is_an_opt_out_keyword_opts_the_phone_out(
    client: FlaskClient, content: str, keyword: str
) -> None:
    assert lookup(client) == {
        "app_key": "app-one",
        "phone": PHONE,
        "opted_out": False,
        "since": None,
        "keyword": None,
        "source": None,
    }
    send(client, reply(content))
    assert lookup(client) == {
        "app_key": "app-one",
        "phone": PHONE,
        "opted_out": True,
        "since": "2024-05-01T08:00:00Z",
        "keyword": keyword,
        "source": "callback",
    }


@pytest.mark.parametrize(
    "content", ["hello TD friend", "TD please", "退订了", "T D", "STOPP", "", "   "]
)
def test_a_reply_that_merely_contains_a_keyword_changes_nothing(
    client: FlaskClient, database: Database, content: str
) -> None:
    send(client, reply(content))
    assert lookup(client)["opted_out"] is False
    assert lookup(client)["since"] is None
    assert history(database) == []


T1, T2 = T0, T0 + timedelta(minutes=5)


@pytest.mark.parametrize(
    ("arrivals", "opted_out", "keyword"),
    [
        ([("TD", T1), ("START", T2)], False, "START"),  # in order
        ([("START", T2), ("TD", T1)], False, "START"),  # START newer, TD arriving after it
        ([("START", T1), ("TD", T2)], True, "TD"),
        ([("TD", T2), ("START", T1)], True, "TD"),
        ([("订阅", T1), ("退订", T2), ("START", T2 + timedelta(seconds=1))], False, "START"),
    ],
)
def test_the_newest_reply_wins_whatever_the_arrival_order(
    client: FlaskClient,
    database: Database,
    arrivals: list[tuple[str, datetime]],
    opted_out: bool,
    keyword: str,
) -> None:
    for content, at in arrivals:
        send(client, reply(content, at))
    state = lookup(client)
    assert (state["opted_out"], state["keyword"]) == (opted_out, keyword)
    assert len(history(database)) == len(arrivals)  # every keyword reply kept as history


def test_the_newest_reply_wins_within_one_callback(client: FlaskClient) -> None:
    send(client, reply("START", T2), reply("TD", T1), reply("TD", T1, phone="13800138001"))
    assert lookup(client)["keyword"] == "START"
    assert lookup(client)["opted_out"] is False
    assert lookup(client, "13800138001")["opted_out"] is True


def test_an_opt_out_and_an_opt_in_at_the_same_time_opt_out(client: FlaskClient) -> None:
    send(client, reply("START", T1))
    send(client, reply("TD", T1))
    send(client, reply("start", T1))  # recorded after the TD, at the same time
    assert lookup(client)["opted_out"] is True
    pairs = [("TD", "Start"), ("td", "START"), ("退订", "订阅"), ("T", "start"), ("R", "sTART")]
    phones = [f"1380013800{i}" for i in range(1, 6)]
    send(client, *(reply(c, T1, p) for p, pair in zip(phones, pairs, strict=True) for c in pair))
    assert [lookup(client, p)["opted_out"] for p in phones] == [True] * 5


def test_a_repeated_reply_is_one_change(client: FlaskClient, database: Database) -> None:
    form = signed_form("app-one", APPS["app-one"], "SMS_REPLY", [reply("TD")])
    for _ in range(2):
        assert client.post("/callbacks/jsms", data=form).status_code == 200
    send(client, reply("TD"))  # the same reply in another callback
    assert len(history(database)) == 1
    assert row_count(database, Reply) == 1


def test_opt_outs_are_per_app(client: FlaskClient) -> None:
    send(client, reply("TD"), app_key="app-one")
    assert lookup(client, app_key="app-one")["opted_out"] is True
    assert lookup(client, app_key="app-two")["opted_out"] is False
    send(client, reply("START", T2), app_key="app-two")
    assert lookup(client, app_key="app-one")["opted_out"] is True


def test_a_keyword_reply_next_to_a_bad_record_still_opts_out(client: FlaskClient) -> None:
    bad = {"phone": PHONE, "content": 42, "replyTime": "soon"}
    form = signed_form("app-one", APPS["app-one"], "SMS_REPLY", [bad, reply("TD")])
    body = client.post("/callbacks/jsms", data=form).get_json()
    assert (body["stored"], body["quarantined"]) == (1, 1)
    assert lookup(client)["opted_out"] is True


# --- the lookup's bad input -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        (f"/opt-outs/{PHONE}", {}, "app_key"),
        (f"/opt-outs/{PHONE}", {"app_key": ""}, "app_key"),
        (f"/opt-outs/{PHONE}", {"app_key": "x" * 65}, "app_key"),
        (f"/opt-outs/{PHONE}", {"app_key": "app-one", "phone": PHONE}, "phone"),
        ("/opt-outs/" + "1" * 33, {"app_key": "app-one"}, "phone"),
        ("/opt-outs/13800%01", {"app_key": "app-one"}, "phone"),
    ],
)
def test_a_bad_lookup_is_a_400_naming_the_parameter(
    client: FlaskClient, path: str, params: dict[str, str], parameter: str
) -> None:
    response = get(client, path, **params)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert (error["code"], error["parameter"]) == ("invalid_parameter", parameter)


def test_the_lookup_needs_a_token(client: FlaskClient) -> None:
    response = client.get(f"/api/v1/opt-outs/{PHONE}", query_string={"app_key": "app-one"})
    assert response.status_code == 401
    assert PHONE not in response.get_data(as_text=True)


def test_the_longest_phone_is_looked_up(client: FlaskClient) -> None:
    longest = "1" * 32
    send(client, reply("TD", phone=longest))
    assert lookup(client, longest)["opted_out"] is True


# --- by hand ----------------------------------------------------------------------------------


def opt_out_cli(runner: FlaskCliRunner, verb: str, *args: str) -> str:
    result = runner.invoke(args=["jsms", "opt-out", verb, *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_changes_by_hand_are_kept_with_who_and_why(
    client: FlaskClient, runner: FlaskCliRunner, database: Database
) -> None:
    args = ["--app-key", "app-one", "--reason", "asked on the phone", "--by", "alice"]
    output = opt_out_cli(runner, "add", PHONE, *args)
    assert "138****8000 is opted out of app-one since" in output
    assert PHONE not in output
    state = lookup(client)
    assert (state["opted_out"], state["keyword"], state["source"]) == (True, None, "manual")
    assert lookup(client, app_key="app-two")["opted_out"] is False

    opt_out_cli(runner, "remove", PHONE, "--app-key", "app-one", "--reason", "wants offers")
    assert lookup(client)["opted_out"] is False
    changes = history(database)
    assert [(c.opted_out, c.source, c.changed_by, c.reason) for c in changes] == [
        (True, "manual", "alice", "asked on the phone"),
        (False, "manual", changes[1].changed_by, "wants offers"),
    ]
    assert changes[1].changed_by  # the account that ran it
    assert all(c.reply_id is None and c.keyword is None for c in changes)


def test_a_reply_older_than_a_change_by_hand_does_not_undo_it(
    client: FlaskClient, runner: FlaskCliRunner
) -> None:
    opt_out_cli(runner, "remove", PHONE, "--app-key", "app-one", "--reason", "complaint")
    send(client, reply("TD", datetime.now(UTC) - timedelta(hours=1)))  # arriving late
    assert lookup(client)["opted_out"] is False
    send(client, reply("TD", datetime.now(UTC) + timedelta(minutes=1)))  # a newer one wins
    assert lookup(client)["opted_out"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", PHONE, "--app-key", "nope", "--reason", "x"], "not in JSMS_APPS"),
        (["add", PHONE, "--app-key", "app-one"], "--reason"),
        (["add", PHONE, "--app-key", "app-one", "--reason", "  "], "say why"),
        (["add", "1" * 33, "--app-key", "app-one", "--reason", "x"], "PHONE"),
        (["remove", PHONE, "--reason", "x"], "--app-key"),
    ],
)
def test_a_change_by_hand_needs_a_configured_app_a_phone_and_a_reason(
    runner: FlaskCliRunner, database: Database, args: list[str], message: str
) -> None:
    result = runner.invoke(args=["jsms", "opt-out", *args])
    assert result.exit_code != 0
    assert message in result.output
    assert history(database) == [] and row_count(database, OptOut) == 0


# --- keywords from the configuration ----------------------------------------------------------


@pytest.fixture
def quit_app(database_url: str) -> Iterator[Flask]:
    """The app with OPT_OUT_KEYWORDS=QUIT,停止 and OPT_IN_KEYWORDS=JOIN."""
    settings = make_settings(
        database_url, opt_out_keywords=("QUIT", "停止"), opt_in_keywords=("JOIN",)
    )
    app = create_app(settings)
    yield app
    app.extensions["database"].engine.dispose()
    opt_outs.use_keywords(DEFAULT_KEYWORDS)  # what every other app in this process reads


def test_configured_keywords_replace_the_defaults(quit_app: Flask) -> None:
    client = quit_app.test_client()
    send(client, reply("TD"))
    assert lookup(client)["opted_out"] is False
    send(client, reply(" quit ", T1 + timedelta(seconds=1)))
    assert lookup(client)["keyword"] == "QUIT"
    send(client, reply("join", T2))
    assert lookup(client)["opted_out"] is False


def test_keywords_come_comma_separated_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPT_OUT_KEYWORDS", " quit, 停止 ,,")
    monkeypatch.setenv("OPT_IN_KEYWORDS", "")
    settings = make_settings("sqlite://")
    assert settings.opt_out_keywords == ("quit", "停止")
    assert settings.keywords().choice("QUIT") is not None
    assert settings.keywords().choice("START") is not None  # empty: the default opt-ins


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"opt_out_keywords": ("TD", "START")}, "both an opt-out and an opt-in"),
        ({"opt_in_keywords": ("ｔｄ",)}, "both an opt-out and an opt-in"),
        ({"opt_out_keywords": ("x" * 33,)}, "1 to 32 characters"),
        ({"opt_out_keywords": ("TD", " ")}, "1 to 32 characters"),
    ],
)
def test_unusable_keywords_stop_the_process(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_settings("sqlite://", **overrides)


def test_the_phone_in_a_lookup_path_is_masked_in_access_lines() -> None:
    """gunicorn's access line holds the path (gunicorn.conf.py): MaskPhones masks it there."""
    line = f'127.0.0.1 "GET /api/v1/opt-outs/{PHONE}" 200 99 1ms'
    record = logging.LogRecord("gunicorn.access", logging.INFO, "", 0, line, None, None)
    MaskPhones().filter(record)
    assert PHONE not in record.getMessage()
    assert "/api/v1/opt-outs/138****8000" in record.getMessage()
