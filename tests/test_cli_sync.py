"""`flask --app wsgi jsms sync`: drains, prints a summary per app and kind, exits 0."""

from __future__ import annotations

from flask.testing import FlaskCliRunner

from app import create_app
from app.config import Settings
from tests.fake_jsms import FakeJsms
from tests.support import FAKE_WINDOW, make_settings


def cli_for(settings: Settings) -> FlaskCliRunner:
    app = create_app(settings)
    app.config["TESTING"] = True
    return app.test_cli_runner()


def test_sync_drains_every_app_and_kind_and_prints_a_summary(
    fake_jsms: FakeJsms, database_url: str
) -> None:
    fake_jsms.add_reports("app-one", 1200)
    fake_jsms.set_mode("app-two", "callback")
    runner = cli_for(
        make_settings(
            database_url, jsms_api_base_url=fake_jsms.url, jsms_rate_limit_seconds=FAKE_WINDOW
        )
    )
    result = runner.invoke(args=["jsms", "sync"])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("app-one report: drained, 3 call(s), 1200 record(s) pulled")
    assert "(1200 stored, 0 duplicates, 0 quarantined); mode pull" in lines[0]
    assert lines[1].startswith("app-one reply: drained, 1 call(s), 0 record(s) pulled")
    assert lines[2].startswith("app-two report: callback mode, 1 call(s)")
    assert "mode callback, next attempt" in lines[2] and "50202" in lines[2]
    assert lines[3].startswith("app-two reply: callback mode") and "mode callback" in lines[3]
    assert fake_jsms.calls_with(50201) == []

    again = runner.invoke(args=["jsms", "sync", "--app-key", "app-two", "--kind", "report"])
    assert again.exit_code == 0
    assert again.output.startswith("app-two report: not due; mode callback, next attempt")


def test_sync_refuses_an_unknown_app_key(fake_jsms: FakeJsms, database_url: str) -> None:
    runner = cli_for(make_settings(database_url, jsms_api_base_url=fake_jsms.url))
    result = runner.invoke(args=["jsms", "sync", "--app-key", "nope"])
    assert result.exit_code == 2
    assert "not in JSMS_APPS" in result.output
    assert fake_jsms.calls == []


def test_sync_fails_without_calling_upstream_when_the_database_is_unreachable(
    fake_jsms: FakeJsms,
) -> None:
    settings = make_settings(
        "postgresql://postgres@127.0.0.1:9/nowhere", jsms_api_base_url=fake_jsms.url
    )
    result = cli_for(settings).invoke(args=["jsms", "sync"])
    assert result.exit_code == 1
    assert "database is unreachable" in result.output
    assert fake_jsms.calls == []
