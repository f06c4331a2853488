"""After a successful call, when the next one may go: the lease's `last_call_at` is the moment
the answer came in (the window counts from there, whatever the latency), and an app whose batch
came back full is due again after one window, not after the idle poll; on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

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
    fake_jsms: FakeJsms, store: Database, tmp_path: Path
) -> None:
    policy = SyncPolicy(window=FAKE_WINDOW, idle_poll=60)
    fake_jsms.add_reports(APP, MAX_BATCH + 1)
    probe(fake_jsms, store, tmp_path, policy)
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
