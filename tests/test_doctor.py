"""`jsms doctor`: a readable report and the right exit code, healthy and broken."""

from __future__ import annotations

import pytest
from alembic import command

from app import create_app
from app.store.schema import alembic_config, upgrade_to_head
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
    assert "[FAIL] app app-one: the probe was refused with 50002: auth failed" in result.output
    assert "fix: copy the app key and master secret from the JSMS console" in result.output
    assert "[FAIL] app app-two: the probe was refused with 50301: developer account frozen" in (
        result.output
    )
    assert "fix: contact JSMS support; once the account is unfrozen, run: jsms resume app-two" in (
        result.output
    )
    assert "2 problem(s) found" in result.output


def sync_states(database_url: str) -> list[tuple[object, ...]]:
    """Every sync_state row, every column, and the leases' holders: what doctor must not touch."""
    from sqlalchemy import select

    from app.store.db import Database
    from app.store.models import PullLease, SyncState

    database = Database(database_url)
    try:
        with database.session() as session:
            columns = [c for c in SyncState.__table__.columns]
            rows = session.execute(select(*columns).order_by(SyncState.app_key, SyncState.kind))
            holders = session.execute(select(PullLease.app_key, PullLease.holder))
            return [tuple(r) for r in rows] + sorted(tuple(h) for h in holders)
    finally:
        database.engine.dispose()


def test_doctor_with_a_wrong_secret_changes_no_sync_state(
    database_url: str, fake_jsms: FakeJsms
) -> None:
    from tests.support import FAKE_WINDOW

    # One app pulling (with a backlog left), one paused by the clock on a real 50301.
    fake_jsms.add_reports("app-one", 700)
    fake_jsms.set_mode("app-two", "frozen")
    app = create_app(make_settings(database_url, jsms_api_base_url=fake_jsms.url))
    try:
        synced = app.test_cli_runner().invoke(args=["jsms", "sync", "--kind", "report"])
    finally:
        app.extensions["database"].engine.dispose()
    assert synced.exit_code == 0, synced.output
    fake_jsms.add_reports("app-one", 3, prefix="late")
    before = sync_states(database_url)
    assert [row[2] for row in before if len(row) > 2] == ["pull", "paused"]

    wrong = {"app-one": "wrong-secret", "app-two": "also-wrong"}
    result = doctor(
        database_url,
        jsms_api_base_url=fake_jsms.url,
        jsms_apps=wrong,
        jsms_rate_limit_seconds=FAKE_WINDOW,
    )
    assert result.exit_code == 1
    assert "[FAIL] app app-one: the probe was refused with 50002" in result.output
    assert sync_states(database_url) == before
    # Each probe waited its turn in the app's window: the upstream never saw two calls in one.
    assert fake_jsms.calls_with(50201) == []

    # A right secret: the probe is handed the late batch, stores it and says so; still no
    # state changes (the paused app stays paused: resuming is a person's decision).
    fixed = doctor(database_url, jsms_api_base_url=fake_jsms.url)
    assert "[  ok] app app-one: pull mode, 3 record(s) pulled and stored: JSMS hands each" in (
        fixed.output
    )
    assert "the probe was refused with 50301" in fixed.output
    assert sync_states(database_url) == before
    assert fake_jsms.calls_with(50201) == []


def test_a_paused_app_that_pulls_again_is_told_to_resume(
    database_url: str, fake_jsms: FakeJsms
) -> None:
    fake_jsms.set_mode("app-two", "frozen")
    app = create_app(make_settings(database_url, jsms_api_base_url=fake_jsms.url))
    try:
        app.test_cli_runner().invoke(args=["jsms", "sync", "--app-key", "app-two"])
    finally:
        app.extensions["database"].engine.dispose()
    fake_jsms.set_mode("app-two", "pull")
    result = doctor(database_url, jsms_api_base_url=fake_jsms.url)
    assert "[FAIL] app app-two: reply paused until" in result.output
    assert "report paused until" in result.output and "the probe pulls fine now" in result.output
    assert "fix: run: jsms resume app-two" in result.output


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

    from app.store.schema import head_revisions
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
