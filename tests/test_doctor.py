"""`jsms doctor`: a readable report and the right exit code, healthy and broken."""

from __future__ import annotations

import pytest
from alembic import command

from app import create_app
from app.store.db import alembic_config, upgrade_to_head
from tests.fake_jsms import FakeJsms
from tests.support import APPS, make_settings


def doctor(database_url: str, **overrides: object):  # type: ignore[no-untyped-def]
    app = create_app(make_settings(database_url, **overrides))
    try:
        return app.test_cli_runner().invoke(args=["jsms", "doctor"])
    finally:
        app.extensions["database"].engine.dispose()


def test_healthy_setup(database_url: str, fake_jsms: FakeJsms) -> None:
    fake_jsms.add_reports("app-one", 3)
    fake_jsms.set_mode("app-two", "callback")
    result = doctor(database_url, jsms_api_base_url=fake_jsms.url)
    assert result.exit_code == 0, result.output
    assert "[  ok] JSMS_APPS: 2 app(s): app-one, app-two" in result.output
    assert "[  ok] migrations: at head" in result.output
    assert "[  ok] app app-one: pull mode, 3 record(s) pulled and stored" in result.output
    assert "[  ok] app app-two: callback mode" in result.output and "50202" in result.output
    assert result.output.rstrip().endswith("all good")
    assert [c.app_key for c in fake_jsms.calls if c.app_key] == ["app-one", "app-two"]


def test_broken_setup_says_what_to_fix(database_url: str, fake_jsms: FakeJsms) -> None:
    fake_jsms.set_mode("app-two", "frozen")
    apps = {"app-one": "wrong-secret", "app-two": APPS["app-two"]}
    result = doctor(database_url, jsms_api_base_url=fake_jsms.url, jsms_apps=apps, api_tokens=())
    assert result.exit_code == 1
    assert "[warn] API_TOKENS" in result.output
    assert "[FAIL] app app-one: paused: 50002" in result.output
    assert "[FAIL] app app-two: paused: 50301" in result.output
    assert "fix: check the app key and master secret" in result.output
    # Paused and never pulled: each app's receipts are at risk too (tests/test_at_risk.py).
    assert "[FAIL] at risk: app-one report: never pulled successfully" in result.output
    assert "4 problem(s) found" in result.output


def test_unreachable_database_and_upstream(database_url: str) -> None:
    # The given kind of database, where it cannot be opened: no such directory, no such database.
    if database_url.startswith("sqlite"):
        broken = "sqlite:////proc/no-such-dir/jsms.sqlite3"
    else:
        broken = database_url.rsplit("/", 1)[0] + "/jsms_no_such_database"
    result = doctor(broken, jsms_apps={}, jsms_api_base_url="http://127.0.0.1:1")
    assert result.exit_code == 1
    assert "[FAIL] JSMS_APPS: no app is configured" in result.output
    assert "[FAIL] database: unreachable" in result.output
    assert "fix: check DATABASE_URL" in result.output
    assert "[FAIL] upstream: http://127.0.0.1:1 unreachable" in result.output


def test_migrations_behind_head(database_url: str, fake_jsms: FakeJsms) -> None:
    command.downgrade(alembic_config(database_url), "0002")
    result = doctor(database_url, jsms_api_base_url=fake_jsms.url)
    assert result.exit_code == 1
    assert "[FAIL] migrations: at 0002, head is" in result.output
    assert "fix: run: jsms migrate" in result.output
    upgrade_to_head(database_url)


def test_bad_configuration_stops_every_command_with_the_variable_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    from tests.servers import BIN, ROOT, service_env

    env = service_env(
        f"sqlite:///{tmp_path}/x.db", JSMS_APPS="key-without-secret", JSMS_RATE_LIMIT_SECONDS="-1"
    )
    done = subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", "jsms", "doctor"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert (
        "configuration error: JSMS_APPS: Value error, JSMS_APPS entry 'key-without-secret'"
        in done.stderr
    )
    assert "JSMS_RATE_LIMIT_SECONDS: Input should be greater than 0" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_copied_env_example_is_flagged_not_passed(
    database_url: str, fake_jsms: FakeJsms, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.config import Settings
    from tests.servers import ROOT

    for name in ("JSMS_APPS", "API_TOKENS", "JSMS_API_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(  # type: ignore[call-arg]
        _env_file=ROOT / ".env.example", database_url=database_url, jsms_api_base_url=fake_jsms.url
    )
    app = create_app(settings)
    try:
        result = app.test_cli_runner().invoke(args=["jsms", "doctor"])
    finally:
        app.extensions["database"].engine.dispose()
    assert result.exit_code == 1
    assert (
        "[FAIL] JSMS_APPS: still holds the placeholder from .env.example: your-app-key"
        in result.output
    )
    assert "fix: set JSMS_APPS to your apps' keys and master secrets" in result.output


def test_the_readme_sample_is_what_doctor_prints(database_url: str, fake_jsms: FakeJsms) -> None:
    import re

    from app.store.db import head_revisions
    from tests.servers import ROOT

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Doctor") :]
    sample = re.search(r"^```\n(.*?)^```$", section, re.M | re.S)
    assert sample
    backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    head = ", ".join(sorted(head_revisions()))
    expected = re.sub(  # the sample names the head of its day; any later head is as good
        r"at head \([0-9]{4}\)",
        f"at head ({head})",
        sample.group(1)
        .replace("https://api.sms.jpush.cn", fake_jsms.url)
        .replace("(postgresql)", f"({backend})"),
    )
    fake_jsms.set_mode("app-two", "callback")
    apps = {"app-one": "wrong-secret", "app-two": APPS["app-two"]}
    result = doctor(database_url, jsms_api_base_url=fake_jsms.url, jsms_apps=apps, api_tokens=())
    assert result.output.splitlines() == expected.splitlines()
