"""The upstream's window counts from a failed call's answer too: whatever JSMS answered, the
lease's `last_call_at` moves to the moment the answer came in, so the next holder's first call
stays clear of the window whatever the latency was; on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.jsms.client import JsmsClient
from app.pull.puller import Puller
from app.pull.state import SyncPolicy
from app.store.db import Database
from app.store.models import PullLease, SyncState
from tests.fake_jsms import FakeJsms
from tests.support import APPS, FAKE_WINDOW

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
