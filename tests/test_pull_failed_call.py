"""The upstream's window counts from a failed call's answer too: whatever JSMS answered, the
lease's `last_call_at` moves to the moment the answer came in, so the next holder's first call
stays clear of the window whatever the latency was; on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from app.jsms.client import JsmsClient
from app.pull.puller import Puller
from app.pull.state import SyncPolicy
from app.store.db import Database
from app.store.models import PullLease, SyncState
from tests.fake_jsms import FakeJsms
from tests.support import APPS, FAKE_WINDOW, failing_statements

APP = "app-one"


@pytest.mark.parametrize("mode", ["server_error", "bare_500", "frozen"])
def test_a_failed_calls_answer_moves_the_window(
    fake_jsms: FakeJsms, store: Database, tmp_path: Path, mode: str
) -> None:
    fake_jsms.set_mode(APP, mode)
    with JsmsClient(fake_jsms.url) as client:
        puller = Puller(store, client, SyncPolicy(window=FAKE_WINDOW), spool=tmp_path)
        [result] = puller.sync_app(APP, APPS[APP], ["report"])
    assert result.outcome == "failed"
    with store.session() as session:
        lease = session.get(PullLease, APP)
        state = session.get(SyncState, (APP, "report"))
        assert lease is not None and state is not None
        assert state.last_attempt_at is not None and state.last_error_at is not None
        # Claimed for the send, then moved to the answer (the moment the failure was recorded).
        assert state.last_attempt_at < state.last_error_at
        assert (lease.holder, lease.last_call_at) == (None, state.last_error_at)


def test_a_failed_calls_log_lines_say_which_app_kind_and_error(
    fake_jsms: FakeJsms, store: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The warning names the app, the kind and JSMS's error; the call's `pull_call` line (the
    README's Logs section) counts nothing stored for a call that brought nothing."""
    caplog.set_level(logging.INFO, logger="app.pull.puller")
    fake_jsms.set_mode(APP, "server_error")
    with JsmsClient(fake_jsms.url) as client:
        Puller(store, client, SyncPolicy(window=FAKE_WINDOW), spool=tmp_path).sync_app(
            APP, APPS[APP], ["report"]
        )
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage() == (
        "pull app=app-one kind=report failed: JSMS error 50019 (HTTP 500): server error: "
        "server error on JSMS's side; fix: nothing to change here: pulling backs off and "
        "retries by itself"
    )
    [call] = [r for r in caplog.records if r.__dict__.get("event") == "pull_call"]
    fields = ("app_key", "kind", "result", "items", "stored", "duplicates", "quarantined", "mode")
    assert {name: call.__dict__[name] for name in fields} == {
        "app_key": APP, "kind": "report", "result": "50019", "items": 0,
        "stored": 0, "duplicates": 0, "quarantined": 0, "mode": "pull",
    }  # fmt: skip


def test_a_failure_the_store_cannot_record_is_logged(
    fake_jsms: FakeJsms, store: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """JSMS refused and the database refuses to record it: the pass still ends as failed, and
    a warning says which app and kind go unrecorded."""
    caplog.set_level(logging.WARNING, logger="app.pull.puller")
    fake_jsms.set_mode(APP, "server_error")
    message = "server error [HTTP 500]"  # what the state would record as the last error
    with (
        failing_statements(store.engine, "UPDATE sync_state", carrying=message) as fault,
        JsmsClient(fake_jsms.url) as client,
    ):
        puller = Puller(store, client, SyncPolicy(window=FAKE_WINDOW), spool=tmp_path)
        [result] = puller.sync_app(APP, APPS[APP], ["report"])
    assert fault.hits == 1 and result.outcome == "failed"
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert lines[-1] == "could not record the failure for app-one report"
