"""Every JSMS error code a puller meets has a meaning and a fix, shown wherever the state is:
`jsms sync`, the log line, `/api/v1/sync`, the status page. 50202 is a state, not a failure."""

from __future__ import annotations

import logging

import pytest

from app import create_app
from app.jsms.codes import ERROR_CODES, explain
from tests.api_data import AUTH
from tests.fake_jsms import FakeJsms
from tests.support import FAKE_WINDOW, TOKEN, make_settings

# The codes a pull of /v1/report or /v1/reply can meet (the upstream's table, for pulling).
PULL_CODES = {50001, 50002, 50008, 50016, 50017, 50018, 50019, 50035, 50036, 50201, 50202, 50301}


def test_every_code_a_puller_meets_has_a_meaning_and_a_fix() -> None:
    assert ERROR_CODES.keys() >= PULL_CODES
    for code in PULL_CODES:
        known = explain(code, "app-one")
        assert known is not None and known.meaning and known.fix
        assert "APP_KEY" not in known.fix
    assert explain(12345) is None and explain(None) is None


@pytest.mark.parametrize(
    ("mode", "code", "meaning", "fix"),
    [
        ("illegal_ip", 50035, "IP allow-list", "static-IP add-on"),
        ("blocked", 50036, "blacklist", "contact JSMS support with the app key"),
    ],
)
def test_an_allow_list_or_a_block_is_explained_everywhere(
    database_url: str,
    fake_jsms: FakeJsms,
    caplog: pytest.LogCaptureFixture,
    mode: str,
    code: int,
    meaning: str,
    fix: str,
) -> None:
    fake_jsms.set_mode("app-one", mode)
    settings = make_settings(
        database_url, jsms_api_base_url=fake_jsms.url, jsms_rate_limit_seconds=FAKE_WINDOW
    )
    app = create_app(settings)
    try:
        with caplog.at_level(logging.INFO):
            synced = app.test_cli_runner().invoke(
                args=["jsms", "sync", "--app-key", "app-one", "--kind", "report"]
            )
        client = app.test_client()
        items = client.get("/api/v1/sync", headers=AUTH).get_json()["items"]
        client.post("/login", data={"token": TOKEN})
        page = client.get("/").get_data(as_text=True)
    finally:
        app.extensions["database"].engine.dispose()

    assert synced.exit_code == 0, synced.output
    assert synced.output.startswith("app-one report: failed, 1 call(s)")
    assert "mode paused" in synced.output and f"last error {code}" in synced.output
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert meaning in warning.getMessage() and "fix: " in warning.getMessage()
    [item] = [i for i in items if (i["app_key"], i["kind"]) == ("app-one", "report")]
    assert (item["mode"], item["last_error_code"]) == ("paused", code)
    assert meaning in item["last_error_text"]
    assert fix in item["last_error_fix"] and "jsms resume app-one" in item["last_error_fix"]
    assert fix in page


def test_callback_mode_is_a_state_logged_at_info(
    database_url: str, fake_jsms: FakeJsms, caplog: pytest.LogCaptureFixture
) -> None:
    fake_jsms.set_mode("app-two", "callback")
    settings = make_settings(
        database_url, jsms_api_base_url=fake_jsms.url, jsms_rate_limit_seconds=FAKE_WINDOW
    )
    app = create_app(settings)
    try:
        with caplog.at_level(logging.INFO):
            synced = app.test_cli_runner().invoke(
                args=["jsms", "-v", "sync", "--app-key", "app-two"]
            )
    finally:
        app.extensions["database"].engine.dispose()
    assert synced.exit_code == 0
    assert [line.split(",")[0] for line in synced.output.splitlines()] == [
        "app-two report: callback mode",
        "app-two reply: callback mode",
    ]
    assert "failed" not in synced.output
    pulled = [r for r in caplog.records if r.name.startswith("app.pull")]
    assert pulled and all(r.levelno == logging.INFO for r in pulled)
    assert any("callback mode: JSMS posts this app's receipts" in r.getMessage() for r in pulled)
