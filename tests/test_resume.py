"""`jsms resume`: after the cause of a pause is fixed, the running clock pulls at once, not in
an hour."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from app import create_app
from app.store.db import Database
from app.store.models import SyncState
from tests.fake_jsms import FakeJsms
from tests.servers import BIN, ROOT, running_jsms, service_env
from tests.support import APPS, FAKE_WINDOW, make_settings, row_count

APP, SECRET = "app-one", APPS["app-one"]


def pause_with_a_wrong_secret(database_url: str, fake_jsms: FakeJsms) -> None:
    """What a mistyped secret does to the clock: both kinds paused for an hour on 50002."""
    settings = make_settings(
        database_url,
        jsms_api_base_url=fake_jsms.url,
        jsms_apps={APP: "mistyped"},
        jsms_rate_limit_seconds=FAKE_WINDOW,
    )
    app = create_app(settings)
    try:
        result = app.test_cli_runner().invoke(args=["jsms", "sync"])
    finally:
        app.extensions["database"].engine.dispose()
    assert result.exit_code == 0, result.output
    assert "mode paused" in result.output


def jsms(database_url: str, fake_jsms: FakeJsms, *args: str) -> subprocess.CompletedProcess[str]:
    """The `jsms` console script as a process, configured with the right secret."""
    env = service_env(database_url, JSMS_APPS=f"{APP}:{SECRET}", JSMS_API_BASE_URL=fake_jsms.url)
    return subprocess.run(
        [str(BIN / "jsms"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_a_50002_pause_resumed_is_pulled_by_the_running_clock(
    fake_jsms: FakeJsms, database_url: str, store: Database, tmp_path: Path
) -> None:
    pause_with_a_wrong_secret(database_url, fake_jsms)
    # The secret is fixed and the clock restarted: still paused, for an hour.
    env = service_env(
        database_url,
        JSMS_APPS=f"{APP}:{SECRET}",
        JSMS_API_BASE_URL=fake_jsms.url,
        JSMS_RATE_LIMIT_SECONDS=str(FAKE_WINDOW),
        BALANCE_POLL_SECONDS="0",  # only pulls call the fake: the test counts them
    )
    fake_jsms.add_reports(APP, 3)
    log_path = tmp_path / "clock.log"
    with running_jsms("clock", env, log_path) as clock:
        not_due = jsms(database_url, fake_jsms, "sync", "--app-key", APP, "--kind", "report")
        assert "not due; mode paused" in not_due.stdout, not_due.stdout + not_due.stderr

        calls_before = len(fake_jsms.calls)
        resumed = jsms(database_url, fake_jsms, "resume", APP, "--kind", "report")
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.stdout.startswith("app-one report: was paused until ")
        assert "(last error 50002: auth failed [HTTP 401])" in resumed.stdout
        assert resumed.stdout.rstrip().endswith("resumed: the next pass pulls now")

        # Without the resume, the next attempt would be an hour away.
        assert fake_jsms.wait_for_calls(calls_before + 1, timeout=30), log_path.read_text()
        clock.send_signal(signal.SIGTERM)
        assert clock.wait(timeout=60) == 0, log_path.read_text()
    # The clock is a process, not a person's command: it keeps logging at INFO.
    assert '"level":"INFO","logger":"app.pull.clock","message":"clock started' in (
        log_path.read_text()
    )
    assert [c.handed_out for c in fake_jsms.calls_with(None, APP)] == [3]
    with store.session() as session:
        report = session.get(SyncState, (APP, "report"))
        reply = session.get(SyncState, (APP, "reply"))
    assert report is not None and report.mode == "pull" and report.records_pulled == 3
    # Only the kind asked for was resumed.
    assert reply is not None and reply.mode == "paused"
    assert row_count(store, SyncState) == 2


def test_resume_says_when_there_was_nothing_to_resume(
    fake_jsms: FakeJsms, database_url: str
) -> None:
    never = jsms(database_url, fake_jsms, "resume", APP)
    assert never.returncode == 0, never.stderr
    assert never.stdout.splitlines() == [
        "app-one report: not held back; nothing to resume",
        "app-one reply: not held back; nothing to resume",
    ]
    unknown = jsms(database_url, fake_jsms, "resume", "nope")
    assert unknown.returncode == 2 and "'nope' is not in JSMS_APPS" in unknown.stderr
    assert fake_jsms.calls == []
