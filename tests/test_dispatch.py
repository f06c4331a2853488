"""The clock's dispatcher: every app side by side, and the most urgent first when bounded."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from app.jsms.client import JsmsClient
from app.pull.dispatch import Dispatcher, catch_up_order
from app.pull.puller import Puller
from app.pull.state import PassResult, SyncPolicy
from app.store.db import Database
from app.store.models import DeliveryReport, SyncMode, SyncState, utcnow
from tests.fake_jsms import FakeJsms
from tests.support import FAKE_WINDOW, throwaway_spool

# JSMS_APPS order: the opposite of their urgency below.
APPS = {"fresh": "s-fresh", "day-old": "s-day-old", "two-days": "s-two-days", "new": "s-new"}


@pytest.fixture
def upstream() -> Iterator[FakeJsms]:
    """A fake JSMS with the four apps, each with a backlog of two full batches."""
    fake = FakeJsms(APPS, window=FAKE_WINDOW).start()
    for app_key in APPS:
        fake.add_reports(app_key, 1000, prefix=f"{app_key}-")
    yield fake
    fake.stop()


def new_state(app_key: str, kind: str) -> SyncState:
    """A state row as the puller first writes it."""
    return SyncState(app_key=app_key, kind=kind, mode=SyncMode.PULL, consecutive_failures=0,
                     records_pulled=0)  # fmt: skip


def pulled_before(store: Database, ages: dict[str, timedelta | None]) -> None:
    """Sync state as if each app was last pulled `age` ago and is due now (None: never)."""
    now = utcnow()
    with store.session() as session, session.begin():
        for app_key, age in ages.items():
            for kind in ("report", "reply"):
                state = new_state(app_key, kind)
                state.last_success_at = None if age is None else now - age
                state.next_attempt_at = now - timedelta(seconds=1)
                session.add(state)


def drain_one_at_a_time(dispatcher: Dispatcher) -> list[str]:
    """Dispatch with nothing else due until every app was started once; the start order."""
    order: list[str] = []
    while len(order) < len(APPS):
        dispatcher.wake.clear()
        order += dispatcher.dispatch()
        assert dispatcher.wake.wait(30), "a pass should end"
    dispatcher.shutdown()
    return order


def test_with_a_bound_of_one_the_oldest_last_success_goes_first(
    upstream: FakeJsms, store: Database
) -> None:
    pulled_before(
        store,
        {"fresh": timedelta(minutes=5), "day-old": timedelta(days=1),
         "two-days": timedelta(days=2), "new": None},
    )  # fmt: skip
    with JsmsClient(upstream.url) as client:
        puller = Puller(store, client, SyncPolicy(window=FAKE_WINDOW), spool=throwaway_spool())
        dispatcher = Dispatcher(puller, APPS, max_parallel=1)
        order = drain_one_at_a_time(dispatcher)

    assert order == ["new", "two-days", "day-old", "fresh"]
    first_call = [c.app_key for c in upstream.calls if c.kind == "report"]
    assert list(dict.fromkeys(first_call)) == order, "the upstream saw them in that order too"
    assert all(upstream.pending(app_key, "report") == 0 for app_key in APPS)
    assert upstream.calls_with(50201) == []


def test_without_a_bound_every_due_app_starts_at_once_and_never_twice(
    upstream: FakeJsms, store: Database
) -> None:
    pulled_before(store, {"fresh": timedelta(minutes=1)})
    with store.session() as session, session.begin():  # "fresh" is not due for an hour
        for state in session.scalars(select(SyncState).where(SyncState.app_key == "fresh")):
            state.next_attempt_at = utcnow() + timedelta(hours=1)
    with JsmsClient(upstream.url) as client:
        puller = Puller(store, client, SyncPolicy(window=FAKE_WINDOW), spool=throwaway_spool())
        dispatcher = Dispatcher(puller, APPS, max_parallel=64)
        started = dispatcher.dispatch()
        # Each pass needs three calls a window apart: all are still draining now.
        again = dispatcher.dispatch()
        dispatcher.shutdown()

    assert started == ["day-old", "two-days", "new"], "never pulled: JSMS_APPS order"
    assert dispatcher.max_parallel == len(APPS), "one thread per app, not the bound"
    assert again == [], "an app being pulled is not started twice"
    assert upstream.pending("fresh", "report") == 1000
    assert all(upstream.pending(app_key, "report") == 0 for app_key in started)
    assert upstream.calls_with(50201) == []


def test_catch_up_order_ranks_backlogs_before_re_probes() -> None:
    now = utcnow()
    states = []
    for app_key, kind, age, mode in [
        ("probe", "report", timedelta(days=2), SyncMode.CALLBACK),
        ("probe", "reply", timedelta(days=2), SyncMode.CALLBACK),
        ("old", "report", timedelta(hours=3), "pull"),
        ("old", "reply", timedelta(minutes=1), "pull"),
        ("older", "report", timedelta(hours=4), "pull"),
        ("older", "reply", timedelta(hours=4), "pull"),
        ("not-due", "report", timedelta(days=3), "pull"),
    ]:
        state = new_state(app_key, kind)
        state.mode, state.last_success_at = mode, now - age
        state.next_attempt_at = now + timedelta(hours=1) if app_key == "not-due" else now
        states.append(state)
    not_due_reply = new_state("not-due", "reply")
    not_due_reply.next_attempt_at = now + timedelta(hours=1)
    states.append(not_due_reply)

    order = catch_up_order(["probe", "not-due", "old", "older", "brand-new"], states, now)

    assert [a.app_key for a in order] == ["brand-new", "older", "old", "probe"]
    assert order[0].kinds == ["report", "reply"]
    assert order[2].rank[1] == now - timedelta(hours=3), "an app is as late as its oldest kind"


class RecordingPuller(Puller):
    """A puller that keeps the result of every pass it made."""

    def sync_app(self, *args: Any, **kwargs: Any) -> list[PassResult]:
        results = super().sync_app(*args, **kwargs)
        self.results = [*getattr(self, "results", []), *results]
        return results


def test_two_clocks_share_the_apps_through_the_lease(upstream: FakeJsms, store: Database) -> None:
    with JsmsClient(upstream.url) as client:
        pullers = [
            RecordingPuller(store, client, SyncPolicy(window=FAKE_WINDOW), spool=throwaway_spool())
            for _ in "ab"
        ]
        clocks = [Dispatcher(puller, APPS, 64) for puller in pullers]
        started = [clock.dispatch() for clock in clocks]
        for clock in clocks:
            clock.shutdown()

    # The second clock tries every app that is still due when it looks (on a loaded machine
    # the first may have drained some by then): each is being pulled, so it finds it taken,
    # or, when the first clock's pass ended between the look and the try, no longer due.
    assert started[0] == list(APPS) and set(started[1]) <= set(APPS)
    for app_key in APPS:
        results = [r for p in pullers for r in getattr(p, "results", []) if r.app_key == app_key]
        outcomes = sorted(r.outcome for r in results if r.kind == "report")
        assert outcomes.count("drained") == 1, "one clock pulls the app"
        # The other finds it taken, or (when it looked after the drain) not due any more.
        assert set(outcomes) <= {"drained", "busy", "not_due"}, outcomes
    assert upstream.calls_with(50201) == []
    with store.session() as session:
        stored = session.scalar(select(func.count(DeliveryReport.id)))
    assert stored == 1000 * len(APPS), "every record stored once"


class DoneAtOnce:
    """An executor whose passes have ended by the time `submit` returns (as a pass that finds
    the lease taken can, on a loaded machine)."""

    def submit(self, fn: Any, *args: Any) -> Future[None]:
        future: Future[None] = Future()
        future.set_result(None)
        return future


def test_a_pass_that_ends_before_dispatch_returns_does_not_hang_the_clock(
    store: Database,
) -> None:
    with JsmsClient("http://127.0.0.1:9") as client:
        puller = Puller(store, client, SyncPolicy(window=FAKE_WINDOW), spool=throwaway_spool())
        dispatcher = Dispatcher(puller, APPS, max_parallel=64)
        dispatcher.executor = DoneAtOnce()  # type: ignore[assignment]
        started: list[str] = []
        thread = threading.Thread(target=lambda: started.extend(dispatcher.dispatch()), daemon=True)
        thread.start()
        thread.join(timeout=30)
    assert not thread.is_alive(), "dispatch() deadlocked on its own lock"
    assert sorted(started) == sorted(APPS) and dispatcher.running() == set()
