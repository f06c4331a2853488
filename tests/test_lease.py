"""The lease and the rate window across holders: a handover, a restart, a long drain.

Each test makes two pullers (two processes, as far as the database can tell) meet at the moment
the promise is about: the second one calls right after the first, so the upstream's window is
only respected if the lease makes it so.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from app.jsms.client import JsmsClient
from app.pull import lease
from app.pull.puller import Puller, release_lease
from app.pull.state import PassOutcome, PassResult, SyncPolicy
from app.store.db import Database
from app.store.models import DeliveryReport, PullLease, utcnow
from tests.fake_jsms import FakeJsms
from tests.support import APPS, FAKE_WINDOW, failing_statements, row_count, throwaway_spool

APP, SECRET = "app-one", APPS["app-one"]
# How long a waiting puller keeps asking for the lease before the test gives up.
PATIENCE = 60.0
# A window longer than a handover can take even on a loaded machine (storing a batch on a busy
# PostgreSQL can take a second): a next holder that ignores it is sure to call inside it.
LONG_WINDOW = 1.5


@pytest.fixture
def long_window_jsms() -> Iterator[FakeJsms]:
    """The fake upstream with LONG_WINDOW."""
    fake = FakeJsms(APPS, window=LONG_WINDOW).start()
    yield fake
    fake.stop()


@pytest.fixture
def pullers(database_url: str) -> Iterator[Callable[..., Puller]]:
    """Pullers with their own engine and HTTP client each (separate processes, in effect)."""
    made: list[tuple[Database, JsmsClient]] = []

    def make(fake: FakeJsms, **policy: float) -> Puller:
        database, client = Database(database_url), JsmsClient(fake.url, timeout=5)
        made.append((database, client))
        return Puller(
            database, client, SyncPolicy(window=fake.window, **policy), spool=throwaway_spool()
        )

    yield make
    for database, client in made:
        client.close()
        database.engine.dispose()


def wait_for_lease(puller: Puller) -> list[PassResult]:
    """Ask for the app's lease until a pass gets it (as a clock tick would, but every 20 ms, so
    the pass starts right after the lease comes free); its results."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        results = puller.sync_app(APP, SECRET, ["report"])
        if results[0].outcome != PassOutcome.BUSY:
            return results
        puller.stop.wait(0.02)
    raise AssertionError("the lease never came free")


def gaps(fake: FakeJsms) -> list[float]:
    """Seconds between consecutive calls the upstream answered, in order."""
    times = [call.at for call in fake.calls]
    return [later - earlier for earlier, later in zip(times, times[1:], strict=False)]


def test_a_holder_handing_over_right_after_its_call_keeps_the_window(
    long_window_jsms: FakeJsms, pullers: Callable[..., Puller]
) -> None:
    """B waits for A's lease and takes it the moment A releases it, right after A's last call:
    B's first call must still wait out the window counted from A's."""
    long_window_jsms.add_reports(APP, 600)  # A makes 2 calls: 500, then 100
    first, second = pullers(long_window_jsms), pullers(long_window_jsms)
    a_results: list[PassResult] = []
    a = threading.Thread(target=lambda: a_results.extend(first.sync_app(APP, SECRET, ["report"])))
    a.start()
    try:
        assert long_window_jsms.wait_for_calls(1), "A never called"
        [b_result] = wait_for_lease(second)
    finally:
        a.join(timeout=PATIENCE)
    [a_result] = a_results

    assert (a_result.outcome, a_result.calls, a_result.items) == ("drained", 2, 600)
    assert (b_result.outcome, b_result.calls) == ("drained", 1), "B never got to call"
    assert len(long_window_jsms.calls) == 3
    assert long_window_jsms.calls_with(50201) == []
    assert min(gaps(long_window_jsms)) >= LONG_WINDOW


def test_a_restart_faster_than_the_window_waits_for_it(
    long_window_jsms: FakeJsms, pullers: Callable[..., Puller]
) -> None:
    """A holder dies right after a call (its lease is never released, and expires at once);
    the puller started in its place must not call before the dead one's window has passed."""
    long_window_jsms.add_reports(APP, 1200)
    dead = pullers(long_window_jsms, lease_ttl=0.001)
    dead._release = lambda session, app_key: None  # type: ignore[method-assign]  # SIGKILL: no release
    [killed] = dead.sync_app(APP, SECRET, ["report"], max_calls=1)
    assert (killed.outcome, killed.calls, killed.items) == ("drained", 1, 500)

    [restarted] = wait_for_lease(pullers(long_window_jsms))

    assert (restarted.outcome, restarted.items) == ("drained", 700)
    assert long_window_jsms.calls_with(50201) == []
    assert min(gaps(long_window_jsms)) >= LONG_WINDOW
    assert row_count(dead.database, DeliveryReport) == 1200


def test_a_drain_longer_than_the_lease_keeps_it_while_a_competitor_waits(
    fake_jsms: FakeJsms, pullers: Callable[..., Puller]
) -> None:
    """Each call renews the lease: a drain lasting several lease lifetimes is never taken over
    by a puller that keeps asking for the lease meanwhile."""
    # Under the drain's fifteen window gaps (3.03 s), yet far over one batch's store (which
    # renews it), even on a loaded machine where storing 500 reports can take over a second.
    ttl = 3.0
    holder, competitor = pullers(fake_jsms, lease_ttl=ttl), pullers(fake_jsms, lease_ttl=ttl)
    # Warm up: the holder's first batch compiles its statements, slow on a loaded machine.
    fake_jsms.add_reports(APP, 500, prefix="warm")
    holder.sync_app(APP, SECRET, ["report"])
    fake_jsms.calls.clear()
    fake_jsms.add_reports(APP, 7500)  # 16 calls, so at least 15 windows: over a lease lifetime
    drained = threading.Event()
    holder_results: list[PassResult] = []

    def drain() -> None:
        try:
            holder_results.extend(holder.sync_app(APP, SECRET, ["report"]))
        finally:
            drained.set()

    thread = threading.Thread(target=drain)
    thread.start()
    competitor_outcomes: list[str] = []
    try:
        assert fake_jsms.wait_for_calls(1), "the holder never called"
        while not drained.is_set() and "drained" not in competitor_outcomes:
            competitor_outcomes.extend(
                r.outcome for r in competitor.sync_app(APP, SECRET, ["report"])
            )
            drained.wait(FAKE_WINDOW / 4)  # a few tries per window, not a busy loop
    finally:
        thread.join(timeout=PATIENCE)
    [result] = holder_results

    assert (result.outcome, result.calls, result.items) == ("drained", 16, 7500)
    started, ended = fake_jsms.calls[0].at, fake_jsms.calls[15].at
    assert ended - started > ttl, "the drain did not outlast the lease"
    # The competitor only ever got the lease once the holder was done (then it found nothing).
    assert competitor_outcomes.count("busy") >= len(competitor_outcomes) - 1
    assert "busy" in competitor_outcomes
    assert len(fake_jsms.calls) == 16 + competitor_outcomes.count("drained")
    assert fake_jsms.calls_with(50201) == []
    assert row_count(holder.database, DeliveryReport) == 8000


# --- the lease functions on their own (mutmut survivors) -------------------------------------


def lease_row(database: Database, app_key: str) -> PullLease:
    with database.session() as session:
        row = session.get(PullLease, app_key)
        assert row is not None
        return row


def test_a_claim_puts_the_call_on_record_for_that_app_and_holder_only(store: Database) -> None:
    """The claim is what a crashed holder leaves behind: the call's time must be on record
    (not only the answer's), on the claimed app's row alone, and only for its holder."""
    now = utcnow()
    with store.session() as session, session.begin():
        for app_key in ("app-one", "app-two"):
            assert lease.acquire(session, app_key, "me", now, ttl=60)
        slot = lease.claim_call(session, "app-one", "me", now, window=5, ttl=60)
        assert slot.granted
    claimed, other = lease_row(store, "app-one"), lease_row(store, "app-two")
    assert claimed.last_call_at == now and claimed.expires_at == now + timedelta(seconds=60)
    assert other.last_call_at is None and other.expires_at == now + timedelta(seconds=60)

    with store.session() as session, session.begin():
        slot = lease.claim_call(session, "app-two", "someone else", now, window=5, ttl=60)
    assert (slot.granted, slot.lease_lost) == (False, True)
    assert lease_row(store, "app-two").last_call_at is None

    later = now + timedelta(seconds=1)
    with store.session() as session, session.begin():
        slot = lease.claim_call(session, "app-one", "me", later, window=5, ttl=60)
    assert (slot.granted, slot.not_before) == (False, now + timedelta(seconds=5))


def test_the_lease_is_taken_when_free_expired_or_ours_and_never_from_a_live_holder(
    store: Database,
) -> None:
    now = utcnow()
    with store.session() as session, session.begin():
        assert lease.acquire(session, "app-one", "me", now, ttl=60)  # free (no row yet)
        assert not lease.acquire(session, "app-one", "you", now, ttl=60)  # mine, alive
        assert lease.acquire(session, "app-one", "me", now + timedelta(seconds=1), ttl=60)
        assert lease.acquire(session, "app-two", "you", now, ttl=60)  # another app's: free
    row = lease_row(store, "app-one")
    assert (row.holder, row.expires_at) == ("me", now + timedelta(seconds=61))
    assert lease_row(store, "app-two").holder == "you"

    expiry = now + timedelta(seconds=61)
    with store.session() as session, session.begin():
        assert not lease.acquire(session, "app-one", "you", expiry - timedelta(microseconds=1), 5)
        assert lease.acquire(session, "app-one", "you", expiry, ttl=5)  # expired at that instant
    row = lease_row(store, "app-one")
    assert (row.holder, row.expires_at) == ("you", expiry + timedelta(seconds=5))


def test_release_and_answers_touch_only_the_holders_row_and_keep_the_window(
    store: Database,
) -> None:
    now = utcnow()
    answered = now + timedelta(seconds=2)
    with store.session() as session, session.begin():
        for app_key in ("app-one", "app-two"):
            assert lease.acquire(session, app_key, "me", now, ttl=60)
            assert lease.claim_call(session, app_key, "me", now, window=5, ttl=60).granted
        lease.record_answer(session, "app-one", "someone else", answered)  # not the holder
        lease.release(session, "app-one", "someone else")
    for app_key in ("app-one", "app-two"):
        row = lease_row(store, app_key)
        assert (row.holder, row.last_call_at) == ("me", now)

    with store.session() as session, session.begin():
        lease.record_answer(session, "app-one", "me", answered)
        lease.release(session, "app-one", "me")
    released, other = lease_row(store, "app-one"), lease_row(store, "app-two")
    # Released: free for anyone, the window still counted from the answer.
    assert (released.holder, released.expires_at, released.last_call_at) == (None, None, answered)
    assert (other.holder, other.last_call_at) == ("me", now)
    with store.session() as session, session.begin():
        assert lease.acquire(session, "app-one", "you", now, ttl=60)
        slot = lease.claim_call(session, "app-one", "you", answered, window=5, ttl=60)
    assert slot.not_before == answered + timedelta(seconds=5)


def test_holder_ids_name_the_host_and_process_and_differ_per_puller() -> None:
    first, second = lease.new_holder_id(), lease.new_holder_id()
    host, pid, suffix = first.rsplit(":", 2)
    assert (host, pid) == (socket.gethostname()[:64], str(os.getpid()))
    assert len(suffix) == 8 and int(suffix, 16) >= 0
    assert first != second
    # Eight lower-case hex digits, the first a letter: never all digits, which the log mask
    # would take for a phone number (checked on many ids: the letter is drawn at random).
    suffixes = [lease.new_holder_id().rsplit(":", 1)[1] for _ in range(100)]
    assert all(s[0] in "abcdef" and set(s) <= set("0123456789abcdef") for s in suffixes)


def test_a_call_exactly_one_window_after_the_last_is_granted(store: Database) -> None:
    """The upstream refuses a call *less* than a window after the last (50201); one exactly a
    window after is allowed, and the lease grants it too, so a puller never waits longer than
    it must."""
    now = utcnow()
    with store.session() as session, session.begin():
        assert lease.acquire(session, "app-one", "me", now, ttl=60)
        assert lease.claim_call(session, "app-one", "me", now, window=5, ttl=60).granted
        later = now + timedelta(seconds=5)
        assert lease.claim_call(session, "app-one", "me", later, window=5, ttl=60).granted
    assert lease_row(store, "app-one").last_call_at == later


def test_a_holder_back_after_another_keeps_the_others_window(
    pullers: Callable[..., Puller],
) -> None:
    """A pulls, then B (the lease free again), then A once more: A's own last call is a window
    past by then, but B's is not, and A's call must wait out B's window (the database's
    record of the last call, not A's memory of its own). A window longer than the handover
    takes, yet under a second."""
    fake = FakeJsms(APPS, window=0.9).start()
    try:
        first, second = pullers(fake), pullers(fake)
        for puller in (first, second, first):
            [result] = puller.sync_app(APP, SECRET, ["report"])
            assert (result.outcome, result.calls) == ("drained", 1)
    finally:
        fake.stop()
    assert len(fake.calls) == 3 and fake.calls_with(50201) == []
    assert min(gaps(fake)) >= fake.window


def test_a_lease_the_database_cannot_take_back_is_left_to_expire(
    store: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """Giving the lease back is best effort (it expires by itself), and says so, naming the
    app, when the database refuses."""
    caplog.set_level(logging.WARNING, logger="app.pull.puller")
    with store.session() as session, failing_statements(store.engine, "UPDATE pull_leases"):
        release_lease(session, APP, "vm:1:holder")
    assert [r.getMessage() for r in caplog.records if r.name == "app.pull.puller"] == [
        "could not release the lease for app-one; it will expire"
    ]


def test_a_pass_that_finds_the_lease_held_says_so_for_each_kind(
    store: Database, pullers: Callable[..., Puller]
) -> None:
    """Another holder has the app: the pass calls nothing, and its result names the app and
    each kind (what `jsms sync` prints: `app-one report: busy (another puller holds …)`)."""
    fake = FakeJsms(APPS, window=FAKE_WINDOW).start()
    try:
        with store.session() as session, session.begin():
            assert lease.acquire(session, APP, "vm:1:other", utcnow(), 60.0)
        results = pullers(fake).sync_app(APP, SECRET)
    finally:
        fake.stop()
    assert [(r.app_key, r.kind, r.outcome, r.calls) for r in results] == [
        (APP, "report", "busy", 0),
        (APP, "reply", "busy", 0),
    ]
    assert fake.calls == []
