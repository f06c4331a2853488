"""Which apps the clock pulls next, and the pool of passes that pulls them side by side.

JSMS's rate window is per app, so every app can drain at its own ceiling at once: each due app
gets a pass of its own, up to `PULL_MAX_PARALLEL_APPS` at a time. When more apps are due than
that, the most urgent go first: the app whose last successful pull is oldest (its oldest
un-pulled receipts are the closest to JSMS's 3-day retention), never-pulled apps before all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from app.jsms.pulled import KINDS, Kind
from app.pull.puller import BatchNotStored, Puller, StoreUnavailable
from app.pull.state import is_due
from app.store.models import SyncMode, SyncState, utcnow

log = logging.getLogger(__name__)
# An app whose pass just ended is not started again sooner than this (a pass that found the
# app's lease taken by another clock ends at once; this keeps it from spinning).
REST_SECONDS = 1.0
# Ranks: a pull kind never pulled, then pull kinds by last success, then re-probes only.
NEVER_PULLED, PULLED, PROBE_ONLY = 0, 1, 2


@dataclass(frozen=True, slots=True)
class DueApp:
    """An app with kinds to pull now, and how urgent it is (lower `rank` goes first)."""

    app_key: str
    kinds: list[Kind]
    rank: tuple[int, datetime | None]

    def sort_key(self) -> tuple[int, float]:
        """Rank, then the oldest last success first."""
        tier, since = self.rank
        return tier, since.timestamp() if since else 0.0


def catch_up_order(
    app_keys: Iterable[str], states: Iterable[SyncState], now: datetime
) -> list[DueApp]:
    """The apps with a due kind, most urgent first; ties keep `app_keys`' order.

    Urgency is judged by the last successful pull of the app's due kinds in pull mode; a kind in
    callback or paused mode only needs a re-probe, which has no backlog to race against.
    """
    by_app: dict[str, dict[str, SyncState]] = {}
    for state in states:
        by_app.setdefault(state.app_key, {})[state.kind] = state
    due = []
    for app_key in app_keys:
        mine = by_app.get(app_key, {})
        kinds = [k for k in KINDS if is_due(mine.get(k), now, on_schedule=True)]
        if kinds:
            due.append(DueApp(app_key, kinds, _rank([mine.get(k) for k in kinds])))
    return sorted(due, key=DueApp.sort_key)


def _rank(states: list[SyncState | None]) -> tuple[int, datetime | None]:
    pulling = [s for s in states if s is None or s.mode == SyncMode.PULL]
    if not pulling:
        return PROBE_ONLY, None
    successes = [s.last_success_at if s else None for s in pulling]
    if None in successes:
        return NEVER_PULLED, None
    return PULLED, min(t for t in successes if t is not None)


def run_pass(puller: Puller, app_key: str, secret: str, kinds: list[Kind]) -> None:
    """One pass for one app's due kinds; a store failure is logged (the next tick retries)."""
    if puller.stop.is_set():
        return
    try:
        for result in puller.sync_app(app_key, secret, kinds, on_schedule=True):
            log.info(result.describe() + next_poll(result.mode, result.next_attempt_at))
    except (StoreUnavailable, BatchNotStored, SQLAlchemyError) as exc:
        log.error("pull app=%s skipped: %s", app_key, exc)


def next_poll(mode: str | None, at: datetime | None) -> str:
    """`; mode pull, next poll at 08:00:01 UTC (in 60 s)`, for people reading the clock's log."""
    if at is None:
        return f"; mode {mode}, next poll now" if mode else ""
    wait = max(0, round((at - utcnow()).total_seconds()))
    return f"; mode {mode}, next poll at {at:%H:%M:%S} UTC (in {wait} s)"


class Dispatcher:
    """Starts a pass for each due app in a thread pool of `max_parallel`, never two per app."""

    def __init__(self, puller: Puller, apps: Mapping[str, str], max_parallel: int) -> None:
        self.puller = puller
        self.apps = dict(apps)
        self.max_parallel = max(1, min(max_parallel, len(self.apps)))
        self.executor = ThreadPoolExecutor(self.max_parallel, thread_name_prefix="pull")
        # Set when a pass ends, so a free slot is filled at once rather than at the next tick.
        self.wake = threading.Event()
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._rest_until: dict[str, float] = {}  # app → monotonic time it may start again

    def dispatch(self) -> list[str]:
        """Start passes for the most urgent due apps that are idle, up to the bound; returns
        the apps started."""
        if self.puller.stop.is_set() or self._free_slots() == 0:
            return []
        try:
            due = self._due_apps()
        except SQLAlchemyError as exc:
            log.error("could not read the sync state: %s", exc)
            return []
        started: list[tuple[str, Future[None]]] = []
        with self._lock:
            resting = time.monotonic()
            for app in due:
                if len(self._running) >= self.max_parallel:
                    break
                if app.app_key in self._running or self._rest_until.get(app.app_key, 0) > resting:
                    continue
                self._running.add(app.app_key)
                future = self.executor.submit(
                    run_pass, self.puller, app.app_key, self.apps[app.app_key], app.kinds
                )
                started.append((app.app_key, future))
        # Outside the lock: a pass already over (a lease held elsewhere) runs its callback here,
        # at once, and the callback takes the lock.
        for app_key, future in started:
            future.add_done_callback(partial(self._finished, app_key))
        return [app_key for app_key, _ in started]

    def running(self) -> set[str]:
        """The apps being pulled now."""
        with self._lock:
            return set(self._running)

    def shutdown(self) -> None:
        """Wait for the running passes (they stop after the batch in hand once `stop` is set)."""
        self.executor.shutdown(wait=True)

    def _due_apps(self) -> list[DueApp]:
        with self.puller.database.session() as session:
            states = session.scalars(
                select(SyncState).where(SyncState.app_key.in_(list(self.apps)))
            ).all()
            return catch_up_order(self.apps, states, self.puller.now())

    def _free_slots(self) -> int:
        with self._lock:
            return self.max_parallel - len(self._running)

    def _finished(self, app_key: str, _future: Future[None]) -> None:
        with self._lock:
            self._running.discard(app_key)
            self._rest_until[app_key] = time.monotonic() + REST_SECONDS
        self.wake.set()
