"""A pulled batch the store refuses is not a successful pull: the batch goes to the spool, and
the sync state (last success, records pulled, the pull lag) and the at-risk countdown stay
where the last stored batch left them until the spool is stored; on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from app.jsms.client import JsmsClient
from app.ops.risk import receipts_at_risk
from app.pull import puller as puller_module
from app.pull import spool
from app.pull.puller import BatchNotStored, Puller
from app.pull.state import SyncPolicy
from app.store.db import Database
from app.store.models import DeliveryReport, PullCallCount, RawEvent, SyncState
from tests.fake_jsms import FakeJsms
from tests.support import APPS, FAKE_WINDOW, failing_statements, row_count

APP = "app-one"
NOW = datetime.now(UTC).replace(microsecond=0)


def reports(prefix: str, count: int, newest: datetime) -> list[dict[str, Any]]:
    return [
        {"msgId": f"{prefix}{i}", "phone": "13800138000", "status": 4001,
         "receiveTime": int((newest - timedelta(minutes=i)).timestamp() * 1000)}
        for i in range(count)
    ]  # fmt: skip


def pull(fake: FakeJsms, store: Database, spooled: Path) -> None:
    with JsmsClient(fake.url) as client:
        puller = Puller(store, client, SyncPolicy(window=FAKE_WINDOW), spool=spooled)
        puller.sync_app(APP, APPS[APP], ["report"])


def what_the_state_says(store: Database) -> dict[str, Any]:
    """What the sync state, the lag, the ok-call count and the at-risk countdown show at NOW."""
    with store.session() as session:
        state = session.get(SyncState, (APP, "report"))
        assert state is not None
        ok_calls = session.get(PullCallCount, (APP, "report", "ok"))
        [risk] = [r for r in receipts_at_risk(session, APPS, NOW) if r.app_key == APP]
        return {
            "last_success_at": state.last_success_at,
            "records_pulled": state.records_pulled,
            "newest_record_at": state.newest_record_at,
            "lag": state.lag(NOW + timedelta(days=1)),
            "consecutive_failures": state.consecutive_failures,
            "mode": state.mode,
            "ok_calls": ok_calls.calls if ok_calls else 0,
            "countdown": (risk.deadline, risk.left, risk.red, risk.detail),
        }


def test_a_batch_the_store_refuses_is_spooled_and_counts_as_no_success(
    fake_jsms: FakeJsms,
    store: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(puller_module, "STORE_RETRY_SECONDS", 0.3)
    spooled = tmp_path / "spool"
    fake_jsms.add(APP, "report", reports("first", 5, NOW - timedelta(days=2)))
    pull(fake_jsms, store, spooled)
    before = what_the_state_says(store)
    assert before["records_pulled"] == 5  # the test's premise: a state a later batch would move

    # Newer records than any stored, so a success recorded for them would move the lag too.
    fake_jsms.add(APP, "report", reports("lost", 30, NOW - timedelta(hours=1)))
    with (
        failing_statements(store.engine, "INSERT INTO raw_events"),
        pytest.raises(BatchNotStored, match="^app-one report: .*injected fault"),
    ):
        pull(fake_jsms, store, spooled)
    assert fake_jsms.pending(APP, "report") == 0  # handed out: the spool holds the only copy
    [waiting] = spool.waiting(spooled)
    assert '"lost29"' in waiting.body and '"first0"' not in waiting.body
    # The one pointer an operator gets to the batch: which app and kind, why, and where it is.
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert line.startswith("pulled batch NOT STORED app=app-one kind=report error=")
    assert "injected fault" in line
    # The file's name, not checked whole: the log's phone mask (once configured) masks its
    # runs of digits.
    assert f": kept in {spooled}/" in line and line.endswith(".json until `jsms reprocess`")
    assert row_count(store, DeliveryReport) == 5
    assert what_the_state_says(store) == before

    [(_, result)] = spool.store_spooled(store, spooled)
    assert (result.stored, result.duplicates, result.quarantined) == (30, 0, 0)
    assert row_count(store, DeliveryReport) == 35 and row_count(store, RawEvent) == 2
    assert spool.waiting(spooled) == []


def test_a_store_that_fails_once_is_retried_and_the_batch_stored(
    fake_jsms: FakeJsms, store: Database, tmp_path: Path
) -> None:
    """The database unavailable for a moment: the batch in hand is written again (after a
    short wait), not spooled."""
    spooled = tmp_path / "spool"
    fake_jsms.add(APP, "report", reports("m", 3, NOW - timedelta(hours=1)))
    with failing_statements(store.engine, "INSERT INTO raw_events", times=1) as fault:
        pull(fake_jsms, store, spooled)
    assert fault.hits == 1
    assert spool.waiting(spooled) == []
    assert row_count(store, DeliveryReport) == 3
    assert what_the_state_says(store)["records_pulled"] == 3


def test_a_store_that_fails_for_another_reason_is_spooled_at_once(
    fake_jsms: FakeJsms, store: Database, tmp_path: Path
) -> None:
    """Only an unavailable database is worth waiting for; any other failure of the batch's
    transaction spools the batch after one attempt."""
    spooled = tmp_path / "spool"
    fake_jsms.add(APP, "report", reports("m", 3, NOW - timedelta(hours=1)))
    refused = failing_statements(store.engine, "UPDATE sync_state", IntegrityError, carrying=3)
    with refused as fault, pytest.raises(BatchNotStored):
        pull(fake_jsms, store, spooled)
    assert fault.hits == 1
    assert len(spool.waiting(spooled)) == 1
    assert row_count(store, DeliveryReport) == 0
