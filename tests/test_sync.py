"""The puller against the fake JSMS over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import DataError

from app.jsms.client import JsmsClient
from app.pull import state as state_module
from app.pull.puller import Puller, StoreUnavailable
from app.pull.state import PassResult, SyncPolicy
from app.store.db import Database
from app.store.models import DeliveryReport, PullLease, RawEvent, Reply, SyncState, utcnow
from tests.fake_jsms import FakeJsms, synthetic_replies
from tests.support import APPS, FAKE_WINDOW, failing_statements, guard_postgres, row_count

APP, SECRET = "app-one", APPS["app-one"]


@pytest.fixture
def make_puller(
    fake_jsms: FakeJsms, store: Database, tmp_path: Path
) -> Iterator[Callable[..., Puller]]:
    """Pullers against the fake; each gets its own HTTP client, closed at the end."""
    clients: list[JsmsClient] = []

    def make(
        *,
        database: Database | None = None,
        timeout: float = 5.0,
        now: Callable[[], datetime] = utcnow,
        **policy: float,
    ) -> Puller:
        client = JsmsClient(fake_jsms.url, timeout=timeout)
        clients.append(client)
        policy_ = SyncPolicy(window=FAKE_WINDOW, **policy)
        return Puller(database or store, client, policy_, now=now, spool=tmp_path / "unstored")

    yield make
    for client in clients:
        client.close()


def state_of(database: Database, kind: str = "report", app_key: str = APP) -> SyncState:
    with database.session() as session:
        state = session.get(SyncState, (app_key, kind))
        assert state is not None
        return state


class ShiftedClock:
    """The real clock, moved `ahead` seconds into the future (to reach a next attempt time).

    One puller keeps using it, so its own record of its last call still spaces real calls.
    """

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> datetime:
        return utcnow() + timedelta(seconds=self.ahead)


def test_drains_a_multi_batch_backlog_exactly_once(
    fake_jsms: FakeJsms, make_puller: Callable[..., Puller], store: Database
) -> None:
    fake_jsms.add_reports(APP, 1234)
    [result] = make_puller().sync_app(APP, SECRET, ["report"])

    assert (result.outcome, result.calls, result.items, result.stored) == ("drained", 3, 1234, 1234)
    assert [c.handed_out for c in fake_jsms.calls] == [500, 500, 234]
    assert fake_jsms.pending(APP, "report") == 0
    assert row_count(store, DeliveryReport) == 1234
    with store.session() as session:
        events = session.scalars(select(RawEvent).order_by(RawEvent.id)).all()
    assert [(e.source, e.type, e.records, e.stored) for e in events] == [
        ("pull", "SMS_REPORT", 500, 500),
        ("pull", "SMS_REPORT", 500, 500),
        ("pull", "SMS_REPORT", 234, 234),
    ]
    state = state_of(store)
    assert (state.mode, state.records_pulled, state.consecutive_failures) == ("pull", 1234, 0)
    assert state.last_success_at is not None and state.last_error_code is None
    assert fake_jsms.calls_with(50201) == []


def test_a_backlog_of_exact_batches_ends_with_an_empty_call_that_stores_nothing(
    fake_jsms: FakeJsms, make_puller: Callable[..., Puller], store: Database
) -> None:
    fake_jsms.add_reports(APP, 1000)
    [result] = make_puller().sync_app(APP, SECRET, ["report"])

    assert [c.handed_out for c in fake_jsms.calls] == [500, 500, 0]
    assert (result.calls, result.stored) == (3, 1000)
    assert row_count(store, RawEvent) == 2  # empty answers are not raw events
    assert fake_jsms.calls_with(50201) == []


def test_pulls_replies_and_reports_for_one_app_within_one_window(
    fake_jsms: FakeJsms, make_puller: Callable[..., Puller], store: Database
) -> None:
    fake_jsms.add_reports(APP, 600)
    fake_jsms.add(APP, "reply", synthetic_replies(700))
    puller = make_puller()
    results = puller.sync_app(APP, SECRET)
    results += puller.sync_app(APP, SECRET)  # right away: the window still applies

    assert [(r.kind, r.items) for r in results] == [
        ("report", 600),
        ("reply", 700),
        ("report", 0),
        ("reply", 0),
    ]
    assert row_count(store, DeliveryReport) == 600
    assert row_count(store, Reply) == 700
    assert fake_jsms.calls_with(50201) == []
    assert len(fake_jsms.calls) == 2 + 2 + 2


def test_callback_mode_stops_calls_until_the_reprobe(
    fake_jsms: FakeJsms, make_puller: Callable[..., Puller], store: Database
) -> None:
    fake_jsms.set_mode(APP, "callback")
    clock = ShiftedClock()
    puller = make_puller(now=clock)
    [result] = puller.sync_app(APP, SECRET, ["report"])
    state = state_of(store)
    assert result.outcome == "callback_mode"  # a state, not a failure
    assert (state.mode, state.last_error_code) == ("callback", 50202)
    assert state.next_attempt_at is not None
    assert state.next_attempt_at - state.last_error_at >= timedelta(seconds=3600)  # type: ignore[operator]

    fake_jsms.set_mode(APP, "pull")
    fake_jsms.add_reports(APP, 10)
    for clock.ahead in (0, 1800, 3500):
        [result] = puller.sync_app(APP, SECRET, ["report"])
        assert result.outcome == "not_due"
    assert len(fake_jsms.calls) == 1

    clock.ahead = 3601
    [result] = puller.sync_app(APP, SECRET, ["report"])
    assert (result.outcome, result.items, result.mode) == ("drained", 10, "pull")
    assert len(fake_jsms.calls) == 2


@pytest.mark.parametrize(
    ("mode", "code"), [("frozen", 50301), ("not_activated", 50008), ("bad_secret", 50002)]
)
def test_auth_failure_and_frozen_account_pause_the_app_with_the_code(
    fake_jsms: FakeJsms, make_puller: Callable[..., Puller], store: Database, mode: str, code: int
) -> None:
    secret = "wrong" if mode == "bad_secret" else SECRET
    if mode != "bad_secret":
        fake_jsms.set_mode(APP, mode)
    [result] = make_puller().sync_app(APP, secret, ["report"])

    state = state_of(store)
    assert (result.outcome, state.mode, state.last_error_code) == ("failed", "paused", code)
    assert state.last_error_message
    assert state.next_attempt_at - state.last_error_at >= timedelta(seconds=3600)  # type: ignore[operator]
    [again] = make_puller().sync_app(APP, secret, ["report"])
    assert again.outcome == "not_due"
    assert len(fake_jsms.calls) == 1


class FrozenClock:
    """A clock that moves only when the test moves it (`ahead` seconds past its start)."""

    def __init__(self) -> None:
        self.start, self.ahead = utcnow(), 0.0

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=self.ahead)


class TopOfRange:
    """`random` for backoff_seconds: always the longest wait its jitter allows."""

    @staticmethod
    def uniform(low: float, high: float) -> float:
        return high


@pytest.mark.parametrize("mode", ["server_error", "bare_500", "slow"])
def test_server_errors_and_timeouts_back_off_exponentially(
    fake_jsms: FakeJsms,
    make_puller: Callable[..., Puller],
    store: Database,
    mode: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The waits the puller sets after each failure, on a clock that stands still (so no wall
    time can make an app due early or late) and with the jitter at its top: they double."""
    monkeypatch.setattr(state_module, "random", TopOfRange)
    fake_jsms.set_mode(APP, mode)
    # A slow answer always outlasts the client's timeout; other answers never meet it.
    fake_jsms.slow_seconds = 5.0
    clock = FrozenClock()
    puller = make_puller(now=clock, timeout=0.3 if mode == "slow" else 10.0)
    waits = []
    for failures in (1, 2, 3, 4):
        [result] = puller.sync_app(APP, SECRET, ["report"])
        assert result.outcome == "failed"
        state = state_of(store)
        assert (state.mode, state.consecutive_failures) == ("pull", failures)
        assert state.last_error_code == (50019 if mode == "server_error" else None)
        waits.append((state.next_attempt_at - state.last_error_at).total_seconds())  # type: ignore[operator]
        # Before its next attempt, a backing-off app is not called, even by a manual pass.
        clock.ahead += waits[-1] - 0.001
        [early] = puller.sync_app(APP, SECRET, ["report"])
        assert early.outcome == "not_due"
        clock.ahead += 0.001
    assert waits == pytest.approx([FAKE_WINDOW * 2**n for n in range(4)], abs=1e-6)
    assert len(fake_jsms.calls) == 4
    if mode == "slow":
        assert "timed out" in (state_of(store).last_error_message or "")

    fake_jsms.set_mode(APP, "pull")
    fake_jsms.add_reports(APP, 3)
    [result] = puller.sync_app(APP, SECRET, ["report"])
    state = state_of(store)
    assert (result.items, state.consecutive_failures, state.mode) == (3, 0, "pull")


def test_a_body_that_is_not_json_is_kept_raw_and_quarantined(
    fake_jsms: FakeJsms, make_puller: Callable[..., Puller], store: Database
) -> None:
    fake_jsms.set_mode(APP, "not_json")
    [result] = make_puller().sync_app(APP, SECRET, ["report"])

    assert (result.outcome, result.quarantined) == ("drained", 1)
    with store.session() as session:
        [event] = session.scalars(select(RawEvent)).all()
    assert event.payload == "<html>maintenance</html>"
    assert (event.quarantined, event.source) == (1, "pull")
    assert "not JSON" in (event.quarantine_reason or "")


def test_items_of_the_wrong_shape_are_quarantined_and_the_rest_stored(
    fake_jsms: FakeJsms, make_puller: Callable[..., Puller], store: Database
) -> None:
    good = {"msgId": "1", "phone": "13800138000", "status": 4001, "receiveTime": 1575015093000}
    fake_jsms.add(APP, "report", [good, {"msgId": "2"}, ["not", "an", "object"]])  # type: ignore[list-item]
    [result] = make_puller().sync_app(APP, SECRET, ["report"])

    assert (result.items, result.stored, result.quarantined) == (3, 1, 2)
    assert row_count(store, DeliveryReport) == 1


def test_two_concurrent_pullers_never_double_pull_nor_provoke_50201(
    fake_jsms: FakeJsms, make_puller: Callable[..., Puller], database_url: str
) -> None:
    fake_jsms.add_reports(APP, 2600)
    fake_jsms.add(APP, "reply", synthetic_replies(900))
    databases = [Database(database_url), Database(database_url)]
    pullers = [make_puller(database=db) for db in databases]
    start = threading.Barrier(len(pullers))
    outcomes: list[str] = []

    def run(puller: Puller) -> None:
        start.wait()
        for _ in range(4):
            outcomes.extend(r.outcome for r in puller.sync_app(APP, SECRET))

    threads = [threading.Thread(target=run, args=(p,)) for p in pullers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert fake_jsms.calls_with(50201) == []
    assert "busy" in outcomes  # they really did overlap
    assert fake_jsms.pending(APP, "report") == fake_jsms.pending(APP, "reply") == 0
    assert row_count(databases[0], DeliveryReport) == 2600
    assert row_count(databases[0], Reply) == 900
    with databases[0].session() as session:
        records, stored, duplicates = session.execute(
            select(
                func.sum(RawEvent.records), func.sum(RawEvent.stored), func.sum(RawEvent.duplicates)
            )
        ).one()
    assert (records, stored, duplicates) == (3500, 3500, 0)
    for db in databases:
        db.engine.dispose()


def test_a_lease_held_by_a_live_puller_is_respected_and_a_dead_ones_expires(
    fake_jsms: FakeJsms, make_puller: Callable[..., Puller], store: Database
) -> None:
    fake_jsms.add_reports(APP, 5)
    with store.session() as session:
        session.add(
            PullLease(app_key=APP, holder="other:1:x", expires_at=utcnow() + timedelta(seconds=60))
        )
        session.commit()
    assert [r.outcome for r in make_puller().sync_app(APP, SECRET)] == ["busy", "busy"]
    assert fake_jsms.calls == []

    clock = ShiftedClock()
    clock.ahead = 61
    [result] = make_puller(now=clock).sync_app(APP, SECRET, ["report"])
    assert (result.outcome, result.items) == ("drained", 5)
    with store.session() as session:
        lease = session.get(PullLease, APP)
        assert lease is not None and lease.holder is None  # released on exit
        assert lease.last_call_at is not None


def test_never_pulls_when_the_store_cannot_take_the_batch(
    fake_jsms: FakeJsms, make_puller: Callable[..., Puller], database_url: str, tmp_path: Path
) -> None:
    """SQLite: a file never migrated. PostgreSQL: the given database, its lease table locked
    by another session (the puller gives up waiting after 0.5 s)."""
    fake_jsms.add_reports(APP, 5)
    if database_url.startswith("sqlite"):
        cannot_write, blocker = Database(f"sqlite:///{tmp_path / 'empty.sqlite3'}"), None
    else:
        cannot_write, blocker = Database(database_url), make_puller().database.sessions()

        @event.listens_for(cannot_write.engine, "connect")
        def impatient(dbapi_connection, record):  # type: ignore[no-untyped-def]
            dbapi_connection.execute("SET lock_timeout = '500ms'")
            dbapi_connection.commit()

        guard_postgres(blocker)
        blocker.execute(text("LOCK TABLE pull_leases IN ACCESS EXCLUSIVE MODE"))
    try:
        with pytest.raises(StoreUnavailable, match=f"^cannot take the lease for {APP}: "):
            make_puller(database=cannot_write).sync_app(APP, SECRET)
    finally:
        if blocker is not None:
            blocker.rollback()
            blocker.close()
        cannot_write.engine.dispose()
    assert fake_jsms.calls == []
    assert fake_jsms.pending(APP, "report") == 5


def test_a_stop_request_ends_the_drain_after_the_batch_in_hand(
    fake_jsms: FakeJsms, make_puller: Callable[..., Puller], store: Database
) -> None:
    fake_jsms.add_reports(APP, 5000)
    puller = make_puller()
    stopper = threading.Thread(
        target=lambda: fake_jsms.wait_for_calls(2) and puller.stop.set(), daemon=True
    )
    stopper.start()
    [result] = puller.sync_app(APP, SECRET, ["report"])
    stopper.join()

    handed_out = len(fake_jsms.handed_out(APP, "report"))
    assert result.outcome == "stopped"
    assert 1000 <= handed_out < 5000
    assert row_count(store, DeliveryReport) == handed_out == result.items


def test_a_stop_while_waiting_for_the_window_makes_no_more_calls(
    fake_jsms: FakeJsms, store: Database, tmp_path: Path
) -> None:
    """A stop (SIGTERM) that comes while the next call waits for its window ends the pass
    there: no batch is handed out after the stop, so none can be cut off by the SIGKILL that
    follows it."""
    fake_jsms.add_reports(APP, 1000)
    results: list[PassResult] = []
    with JsmsClient(fake_jsms.url) as client:
        # A window the stop comes long before the end of.
        puller = Puller(store, client, SyncPolicy(window=10.0), spool=tmp_path)
        drain = threading.Thread(
            target=lambda: results.extend(puller.sync_app(APP, SECRET, ["report"]))
        )
        drain.start()
        try:
            # The second call is on record (claimed, committed, before the wait): stop now.
            assert poll_until(lambda: second_call_claimed(store)), "no second call was claimed"
        finally:
            puller.stop.set()
            drain.join(timeout=30)
    [result] = results
    assert (result.outcome, result.calls) == ("stopped", 1)
    assert len(fake_jsms.calls) == 1


def second_call_claimed(database: Database) -> bool:
    with database.session() as session:
        state = session.get(SyncState, (APP, "report"))
    if state is None or state.last_success_at is None or state.last_attempt_at is None:
        return False
    return state.last_attempt_at > state.last_success_at


def poll_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_call_the_database_cannot_put_on_record_is_not_made(
    fake_jsms: FakeJsms, make_puller: Callable[..., Puller]
) -> None:
    """A call goes on record before it is made: a database that refuses the record ends the
    pass before the call, saying which app (the clock's log, `jsms sync`)."""
    fake_jsms.add_reports(APP, 5)
    puller = make_puller()
    with (
        failing_statements(puller.database.engine, "UPDATE pull_leases SET expires_at"),
        pytest.raises(StoreUnavailable, match=f"^cannot record a call for {APP}: "),
    ):
        puller.sync_app(APP, SECRET, ["report"])
    assert fake_jsms.calls == []
    assert fake_jsms.pending(APP, "report") == 5


def test_a_batch_whose_records_the_store_refuses_is_kept_raw_and_quarantined(
    fake_jsms: FakeJsms, make_puller: Callable[..., Puller], store: Database
) -> None:
    """The store refusing the records (a constraint, a value it cannot hold) must not cost the
    batch, which the upstream has handed out for good: its body is kept raw and quarantined."""
    fake_jsms.add_reports(APP, 3)

    with failing_statements(store.engine, "INSERT INTO delivery_reports", DataError):
        [result] = make_puller().sync_app(APP, SECRET, ["report"])

    assert (result.outcome, result.items, result.stored, result.quarantined) == ("drained", 3, 0, 3)
    assert fake_jsms.pending(APP, "report") == 0
    assert row_count(store, DeliveryReport) == 0
    with store.session() as session:
        [event_row] = session.scalars(select(RawEvent)).all()
    handed_out = [r["msgId"] for r in fake_jsms.handed_out(APP, "report")]
    assert all(msg_id in event_row.payload for msg_id in handed_out)
    assert (event_row.source, event_row.quarantined) == ("pull", 3)  # every item it held
    assert "could not be stored" in (event_row.quarantine_reason or "")
    assert state_of(store).last_success_at is not None
