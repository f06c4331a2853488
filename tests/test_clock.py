"""The clock process and `jsms sync` as real processes: SIGTERM mid-drain loses nothing."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.jsms.client import JsmsClient
from app.pull.puller import Puller
from app.pull.state import SyncPolicy
from app.store.db import Database
from app.store.models import DeliveryReport, PullLease
from tests.fake_jsms import MAX_BATCH, FakeJsms
from tests.servers import running_jsms, service_env
from tests.support import APPS, FAKE_WINDOW, failing_statements, throwaway_spool

APP, SECRET = "app-one", APPS["app-one"]


def test_the_clock_only_pulls_kinds_that_are_due(
    fake_jsms: FakeJsms, store: Database, tmp_path: Path
) -> None:
    with JsmsClient(fake_jsms.url) as client:
        puller = Puller(store, client, SyncPolicy(window=FAKE_WINDOW, idle_poll=60), spool=tmp_path)
        assert puller.due_kinds(APP) == ["report", "reply"]  # never pulled
        puller.sync_app(APP, SECRET, ["report"], on_schedule=True)
        assert puller.due_kinds(APP) == ["reply"]  # reports: next poll in a minute
        fake_jsms.set_mode(APP, "callback")
        puller.sync_app(APP, SECRET, ["reply"], on_schedule=True)
        assert puller.due_kinds(APP) == []


def test_a_scheduled_pass_checks_again_under_the_lease_and_drains_past_one_batch(
    fake_jsms: FakeJsms, store: Database, tmp_path: Path
) -> None:
    """The dispatcher picks the due kinds before the pass takes the app's lease, and another
    clock may pull one meanwhile: under the lease the pass checks again, and a kind no longer
    due is not called (an idle app is polled on its schedule, not once per clock). Only a
    kind's first turn waits for the schedule: a full batch is followed by the next call one
    window later, in the same pass. The pass that does not call says so, with the state."""
    fake_jsms.add_reports(APP, MAX_BATCH + 1)
    with JsmsClient(fake_jsms.url) as client:
        puller = Puller(store, client, SyncPolicy(window=FAKE_WINDOW, idle_poll=60), spool=tmp_path)
        [drained] = puller.sync_app(APP, SECRET, ["report"], on_schedule=True)
        [again] = puller.sync_app(APP, SECRET, ["report"], on_schedule=True)
    assert (drained.outcome, drained.calls, drained.items) == ("drained", 2, MAX_BATCH + 1)
    # Said as it is for the clock's log and `jsms sync`: which app and kind, and until when.
    assert (again.app_key, again.kind, again.outcome, again.calls) == (APP, "report", "not_due", 0)
    assert (again.mode, again.next_attempt_at) == ("pull", drained.next_attempt_at)
    assert drained.next_attempt_at is not None
    assert len(fake_jsms.calls) == 2


@pytest.mark.slow
@pytest.mark.parametrize("command", ["clock", "sync"])
def test_sigterm_mid_drain_commits_the_batch_in_hand_and_exits_cleanly(
    fake_jsms: FakeJsms, store: Database, database_url: str, tmp_path: Path, command: str
) -> None:
    backlog = 10_000
    fake_jsms.add_reports(APP, backlog)
    log_path = tmp_path / "process.log"
    env = service_env(
        database_url,
        JSMS_APPS=f"{APP}:{SECRET}",
        JSMS_API_BASE_URL=fake_jsms.url,
        JSMS_RATE_LIMIT_SECONDS=str(FAKE_WINDOW),
        LOG_LEVEL="INFO",
        BALANCE_POLL_SECONDS="0",  # only pulls call the fake: the test counts them
    )
    with running_jsms(command, env, log_path) as process:
        # Three calls: reports, replies (reports and replies take turns), reports again.
        assert fake_jsms.wait_for_calls(3, timeout=60), log_path.read_text()
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=60)
    output = log_path.read_text()

    assert returncode == 0, output
    handed_out = len(fake_jsms.handed_out(APP, "report"))
    assert 1000 <= handed_out < backlog, "SIGTERM should land mid-drain"
    with store.session() as session:
        stored = session.scalar(select(func.count(DeliveryReport.id)))
        lease = session.get(PullLease, APP)
    assert handed_out - (stored or 0) == 0, output
    assert lease is not None and lease.holder is None, "the lease is released on exit"
    assert fake_jsms.calls_with(50201) == []
    assert "Traceback" not in output


def test_the_clock_stores_spooled_batches_once_the_database_is_back(
    fake_jsms: FakeJsms, store: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch the database could not take waits in the spool; the clock's own job stores it
    as soon as the database works again, with no person running `jsms reprocess`."""
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent

    from app.pull import clock
    from app.pull import puller as puller_module
    from app.pull.puller import BatchNotStored
    from app.store.models import RawEvent

    monkeypatch.setattr(puller_module, "STORE_RETRY_SECONDS", 0.3)
    monkeypatch.setattr(clock, "SPOOL_EVERY_SECONDS", 0.2)
    fake_jsms.add_reports(APP, 30)
    spool_dir = tmp_path / "unstored"

    gone = failing_statements(store.engine, "INSERT INTO raw_events")
    with gone as database_gone, JsmsClient(fake_jsms.url) as client:
        puller = Puller(store, client, SyncPolicy(window=FAKE_WINDOW), spool=spool_dir)
        with pytest.raises(BatchNotStored):
            puller.sync_app(APP, SECRET, ["report"])
        assert fake_jsms.pending(APP, "report") == 0  # handed out: the spool has the only copy
        [spooled] = spool_dir.glob("*.json")

        runs: list[threading.Event] = [threading.Event() for _ in range(3)]

        def spool_job_ran(job_event: JobExecutionEvent) -> None:
            if job_event.job_id == "spool":
                next(e for e in runs if not e.is_set()).set()

        scheduler = clock.build_scheduler(puller, {})
        scheduler.add_listener(spool_job_ran, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        scheduler.start()
        try:
            assert runs[0].wait(timeout=30)
            assert spooled.exists()  # still down: the batch keeps waiting
            database_gone.heal()
            assert runs[2].wait(timeout=30)  # the run after the one under way when it came back
        finally:
            scheduler.shutdown(wait=True)
    assert not spooled.exists()
    with store.session() as session:
        assert session.scalar(select(func.count(DeliveryReport.id))) == 30
        [raw] = session.scalars(select(RawEvent)).all()
    assert raw.source == "pull" and raw.records == 30


def test_the_clock_says_when_it_polls_next(
    fake_jsms: FakeJsms, store: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """Between polls the clock is quiet for a minute: its log says what it is waiting for."""
    import logging

    from app.jsms.pulled import KINDS
    from app.pull.clock import announce_next_polls
    from app.pull.dispatch import run_pass

    fake_jsms.add_reports(APP, 3)
    with JsmsClient(fake_jsms.url) as client, caplog.at_level(logging.INFO):
        puller = Puller(
            store, client, SyncPolicy(window=FAKE_WINDOW, idle_poll=60), spool=throwaway_spool()
        )
        run_pass(puller, APP, SECRET, list(KINDS))  # what the dispatcher runs for a due app
        announce_next_polls(store, {APP: SECRET})
    people = {"app.pull.clock", "app.pull.dispatch"}
    lines = [r.getMessage() for r in caplog.records if r.name in people]
    assert lines[0].startswith("app-one report: drained, 3 record(s) pulled, 3 stored; mode pull,")
    assert all(" next poll at " in line and " UTC (in " in line for line in lines), lines
    heads = [line.split(":")[0] for line in lines]
    assert heads == ["app-one report", "app-one reply", "app-one reply", "app-one report"]
