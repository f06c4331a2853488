"""After a successful call, when the next one may go: the lease's `last_call_at` is the moment
the answer came in (the window counts from there, whatever the latency), and an app whose batch
came back full is due again after one window, not after the idle poll; on SQLite and
PostgreSQL."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest

from app.jsms.client import JsmsClient
from app.pull.puller import Puller
from app.pull.state import SyncPolicy
from app.store.db import Database
from app.store.models import PullLease, SyncState
from tests.fake_jsms import MAX_BATCH, FakeJsms
from tests.support import APPS, FAKE_WINDOW

APP = "app-one"


def probe(fake: FakeJsms, store: Database, spool: Path, policy: SyncPolicy) -> None:
    """One call, as `jsms sync --probe` makes: what it brings is stored, the pass ends."""
    with JsmsClient(fake.url) as client:
        puller = Puller(store, client, policy, spool=spool)
        [result] = puller.sync_app(APP, APPS[APP], ["report"], max_calls=1)
    assert result.calls == 1


def test_a_full_batch_makes_the_app_due_again_after_one_window(
    fake_jsms: FakeJsms, store: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.pull.puller")
    policy = SyncPolicy(window=FAKE_WINDOW, idle_poll=60)
    fake_jsms.add_reports(APP, MAX_BATCH + 1)
    probe(fake_jsms, store, tmp_path, policy)
    [call] = [r for r in caplog.records if r.__dict__.get("event") == "pull_call"]
    fields = ("app_key", "kind", "result", "items", "stored", "duplicates", "quarantined", "mode")
    assert {name: call.__dict__[name] for name in fields} == {
        "app_key": APP, "kind": "report", "result": "ok", "items": MAX_BATCH,
        "stored": MAX_BATCH, "duplicates": 0, "quarantined": 0, "mode": "pull",
    }  # fmt: skip
    with store.session() as session:
        state = session.get(SyncState, (APP, "report"))
        lease = session.get(PullLease, APP)
    assert state is not None and lease is not None and state.last_success_at is not None
    assert state.next_attempt_at == state.last_success_at + timedelta(seconds=policy.window)
    # The window counts from the answer, which is when the success was recorded.
    assert state.last_attempt_at is not None and state.last_attempt_at < state.last_success_at
    assert (lease.holder, lease.last_call_at) == (None, state.last_success_at)

    probe(fake_jsms, store, tmp_path, policy)  # the one record left: not full, idle poll next
    with store.session() as session:
        state = session.get(SyncState, (APP, "report"))
    assert state is not None and state.last_success_at is not None
    assert state.next_attempt_at == state.last_success_at + timedelta(seconds=policy.idle_poll)
