"""The `clock` process: pull passes for every due app side by side, batches spooled to disk
stored as soon as the database takes them again, the delivery rollup's fold every minute, and
hourly retention, until SIGTERM.

Each tick the dispatcher (`app/pull/dispatch.py`) starts a pass for every due app that is not
being pulled yet, most urgent first, up to `PULL_MAX_PARALLEL_APPS` at once (apps have separate
windows, so they drain in parallel); APScheduler runs retention. SIGTERM or SIGINT sets the
puller's stop event: the batch in hand is committed, leases are released, and the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from app.pull import spool
from app.pull.balance import BalanceReader, read_balances
from app.pull.dispatch import Dispatcher, next_poll
from app.pull.puller import Puller
from app.store import rollup
from app.store.alarms import beat
from app.store.db import DATABASE_UNAVAILABLE, Database
from app.store.models import SyncState, utcnow
from app.store.retention import RetentionPolicy, purge

log = logging.getLogger(__name__)
# How often the dispatcher looks for due apps (and at once when a pass ends).
TICK_SECONDS = 1.0
# How long a pass waits for a pooled database connection. A pass holds one only while writing
# (never across the window or an upstream call), so when many apps' batches arrive together they
# queue for the pool; shorter than the puller's 20 s of retries for a batch in hand.
CLOCK_POOL_TIMEOUT_SECONDS = 15.0
# Retention runs this often, deleting at most RETENTION_BATCHES × 1,000 rows per table a run.
RETENTION_EVERY_HOURS = 1
RETENTION_BATCHES = 50
# The clock writes a heartbeat this often; `/metrics` exports it for the "clock silent" alert.
HEARTBEAT_SECONDS = 30
# How often the clock folds the delivery rollup's pending changes into it (app/store/rollup.py).
ROLLUP_EVERY_SECONDS = 60.0
# How often the clock looks for batches spooled to disk while the database was down.
SPOOL_EVERY_SECONDS = 10.0
# How often the clock looks for apps whose balance is due (each is read every
# BALANCE_POLL_SECONDS; one whose lease a pass holds is read at a later look).
BALANCE_EVERY_SECONDS = 30.0


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """While inside, SIGTERM and SIGINT set `stop` instead of killing the process."""

    def _request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received: finishing the batch in hand, then exiting", signal.strsignal(signum))
        stop.set()

    previous = {sig: signal.signal(sig, _request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def announce_next_polls(database: Database, apps: dict[str, str]) -> None:
    """At start, say when each app and kind is pulled next (a quiet clock is waiting, not
    stuck)."""
    try:
        with database.session() as session:
            states = session.scalars(select(SyncState).where(SyncState.app_key.in_(apps))).all()
    except SQLAlchemyError:
        return
    for state in sorted(states, key=lambda s: (s.app_key, s.kind)):
        log.info(
            f"{state.app_key} {state.kind}: waiting" + next_poll(state.mode, state.next_attempt_at)
        )


def drain_spool(puller: Puller) -> None:
    """The clock's job: store spooled batches as soon as the database takes them again."""
    if puller.stop.is_set():
        return
    try:
        spool.store_spooled(puller.database, puller.spool)
    except DATABASE_UNAVAILABLE as exc:
        log.warning("spooled batches wait: the database is still unavailable (%s)", exc)


def enforce_retention(puller: Puller, policy: RetentionPolicy) -> None:
    """Delete expired rows in small batches (a backlog is worked off over several runs)."""
    if puller.stop.is_set():
        return
    try:
        with puller.database.session() as session:
            deleted = purge(session, policy, utcnow(), max_batches=RETENTION_BATCHES)
    except SQLAlchemyError as exc:
        log.error("retention skipped: %s", exc)
        return
    if any(deleted.values()):
        log.info("retention", extra={"event": "retention", "deleted": deleted})


def fold_rollup(puller: Puller) -> None:
    """Fold the delivery rollup's pending changes into it, so readers sum few of them."""
    if puller.stop.is_set():
        return
    try:
        folded = rollup.fold(puller.database.engine)
    except SQLAlchemyError as exc:  # a rebuild holding the lock, or the database away
        log.warning("rollup fold skipped: %s", exc)
        return
    log.debug("rollup fold: %d changes", folded)


def send_heartbeat(puller: Puller) -> None:
    """Tell the store this clock is alive (its own thread, so a long drain cannot hide it)."""
    if puller.stop.is_set():
        return
    try:
        with puller.database.session() as session, session.begin():
            beat(session, puller.holder, utcnow())
    except SQLAlchemyError as exc:
        log.error("heartbeat skipped: %s", exc)


def build_scheduler(
    puller: Puller,
    retention: RetentionPolicy | None = None,
    apps: Mapping[str, str] | None = None,
    balance_every: float = 0,
) -> BackgroundScheduler:
    """A scheduler with the heartbeat, the spool drain, the rollup fold, when retention is on
    the hourly retention job, and when `balance_every` is set the balance reads of `apps` (each
    first run now). Pull passes run in the dispatcher's own pool."""
    scheduler = BackgroundScheduler(
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        timezone=UTC,
    )
    # (id, job, its arguments, how often)
    jobs: list[tuple[str, Callable[..., object], tuple[Any, ...], dict[str, float]]] = [
        ("heartbeat", send_heartbeat, (puller,), {"seconds": float(HEARTBEAT_SECONDS)}),
        ("spool", drain_spool, (puller,), {"seconds": SPOOL_EVERY_SECONDS}),
        ("rollup", fold_rollup, (puller,), {"seconds": ROLLUP_EVERY_SECONDS}),
    ]
    if retention and (retention.raw_event_days or retention.record_days):
        hourly = {"hours": float(RETENTION_EVERY_HOURS)}
        jobs.append(("retention", enforce_retention, (puller, retention), hourly))
    if apps and balance_every > 0:
        reader = BalanceReader(puller, apps, balance_every)
        looks = {"seconds": min(BALANCE_EVERY_SECONDS, balance_every)}
        jobs.append(("balance", read_balances, (reader,), looks))
    for job_id, job, args, interval in jobs:
        scheduler.add_job(
            job, "interval", args=args, id=job_id, next_run_time=datetime.now(UTC), **interval
        )
    return scheduler


def run_clock(
    puller: Puller,
    apps: dict[str, str],
    retention: RetentionPolicy | None = None,
    max_parallel: int = 64,
    balance_every: float = 0,
) -> None:
    """Pull every due app, `max_parallel` at most at once, and read their balances every
    `balance_every` seconds (0: never), until SIGTERM/SIGINT; stop cleanly."""
    scheduler = build_scheduler(puller, retention, apps, balance_every)
    dispatcher = Dispatcher(puller, apps, max_parallel)
    with stop_on_signals(puller.stop):
        scheduler.start()
        log.info(
            "clock started: %d app(s), %d at once, holder %s; each app is pulled when due,"
            " idle apps every %d s",
            len(apps), dispatcher.max_parallel, puller.holder, puller.policy.idle_poll,
        )  # fmt: skip
        announce_next_polls(puller.database, apps)
        while not puller.stop.is_set():
            dispatcher.dispatch()
            dispatcher.wake.wait(TICK_SECONDS)
            dispatcher.wake.clear()
        # Waits for running passes, which stop after committing the batch in hand.
        dispatcher.shutdown()
        scheduler.shutdown(wait=True)
    log.info("clock stopped")
