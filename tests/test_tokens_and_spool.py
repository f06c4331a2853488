"""Tokens and sessions (doctor's length check, Secure cookies behind trusted proxies only,
METRICS_TOKEN) and the spool (unique names, directory fsync, leftovers reported)."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from app import create_app
from app.pull import spool
from tests.support import TOKEN, make_settings

LONG_TOKEN = "x" * 40


@pytest.fixture
def make_app(database_url: str) -> Iterator[Any]:
    apps: list[Flask] = []

    def make(**overrides: object) -> Flask:
        app = create_app(make_settings(database_url, **overrides))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["database"].engine.dispose()


@pytest.mark.parametrize(
    ("overrides", "base_url", "headers", "secure"),
    [
        ({}, "https://jsms.example", {}, True),
        ({}, "http://jsms.example", {}, False),
        ({}, "http://jsms.example", {"X-Forwarded-Proto": "https"}, False),  # anyone's header
        ({"trusted_proxies": "127.0.0.1"}, "http://jsms.example", {"X-Forwarded-Proto": "https"},
         True),
        ({"trusted_proxies": "10.0.0.0/8"}, "http://jsms.example",
         {"X-Forwarded-Proto": "https"}, False),  # the peer (127.0.0.1) is not that proxy
        ({"dyno": "web.1"}, "http://jsms.example", {"X-Forwarded-Proto": "https"}, True),
        ({"dyno": "web.1"}, "http://jsms.example", {"X-Forwarded-Proto": "http"}, False),
    ],
)  # fmt: skip
def test_the_session_cookie_is_secure_when_the_request_came_over_https(
    make_app: Any, overrides: dict[str, object], base_url: str, headers: dict[str, str],
    secure: bool,
) -> None:  # fmt: skip
    client = make_app(**overrides).test_client()
    response = client.post("/login", data={"token": TOKEN}, base_url=base_url, headers=headers)
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert ("; Secure" in cookie) is secure, cookie
    assert "HttpOnly" in cookie


def test_metrics_token_when_set_is_required(make_app: Any) -> None:
    open_app = make_app().test_client()
    assert open_app.get("/metrics").status_code == 200
    client = make_app(metrics_token=LONG_TOKEN).test_client()
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused.get_json()["error"]["code"] == "unauthorized"
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    # An API token is not the metrics token.
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401
    ok = client.get("/metrics", headers={"Authorization": f"Bearer {LONG_TOKEN}"})
    assert ok.status_code == 200 and b"jsms_callbacks_total" in ok.data


def doctor_output(app: Flask) -> str:
    return str(app.test_cli_runner().invoke(args=["jsms", "doctor"]).output)


def test_doctor_warns_about_short_tokens(make_app: Any, tmp_path: Path) -> None:
    short = make_app(api_tokens=(LONG_TOKEN, "short"), metrics_token="tiny")
    short.instance_path = str(tmp_path)
    output = doctor_output(short)
    assert "[warn] API_TOKENS: token(s) number 2 shorter than 32 characters" in output
    assert "[warn] METRICS_TOKEN" in output
    assert "short" not in output.split("API_TOKENS", 1)[1].split("\n")[0].replace("shorter", "")
    long = make_app(api_tokens=(LONG_TOKEN,), metrics_token=LONG_TOKEN)
    long.instance_path = str(tmp_path)
    output = doctor_output(long)
    assert "[  ok] API_TOKENS: 1 token(s)" in output and "METRICS_TOKEN" not in output


def test_spool_names_are_unique_across_threads(tmp_path: Path) -> None:
    start = threading.Barrier(4)

    def save_many() -> None:
        start.wait()
        for _ in range(50):
            spool.save(tmp_path, "app-one", "report", "[]")

    threads = [threading.Thread(target=save_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(list(tmp_path.glob("*.json"))) == 200
    assert spool.leftovers(tmp_path) == []


def test_spool_fsyncs_the_directory_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[tuple[bool, list[str]]] = []
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        is_dir = stat.S_ISDIR(os.fstat(descriptor).st_mode)
        synced.append((is_dir, sorted(p.name for p in tmp_path.iterdir())))
        real_fsync(descriptor)

    monkeypatch.setattr(spool.os, "fsync", fsync)
    path = spool.save(tmp_path, "app-one", "report", "[]")
    assert [is_dir for is_dir, _ in synced] == [False, True]
    assert synced[-1][1] == [path.name]  # the directory is synced once the final name is in it


def test_leftover_partial_files_are_reported(make_app: Any, tmp_path: Path) -> None:
    app = make_app()
    app.instance_path = str(tmp_path)
    (tmp_path / "unstored").mkdir()
    (tmp_path / "unstored" / "20261128T000000000000-dead.partial").write_text('{"app_key"')
    result = app.test_cli_runner().invoke(args=["jsms", "reprocess"])
    assert result.exit_code == 0
    assert "unfinished spool file" in result.output and "dead.partial" in result.output
    assert "[warn] spool: 1 unfinished file(s)" in doctor_output(app)
